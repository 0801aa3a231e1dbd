"""The InsultFilter work queue of the direct middlewares: queued tasks, tasks leased to
workers, results waiting to be collected.

Nothing accepted is lost while the front runs: a task pulled by a worker is *leased* to
it, and goes back to the head of the queue when that worker re-registers under the same
id (a restarted worker) or misses three heartbeats (a dead or stuck one). A result that
comes back twice, because a slow worker was presumed dead, is kept once: a task counts
as done the first time its result arrives.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from middlewares.contract import RetryLater
from middlewares.core import ResultLog
from middlewares.direct.directory import STARTUP_GRACE, StartupBarrier

log = logging.getLogger(__name__)

#: Seconds between two heartbeats of a worker; three missed ones re-queue its tasks.
HEARTBEAT_INTERVAL = 1.0

LEASE_TIMEOUT = 3 * HEARTBEAT_INTERVAL

#: Most tasks queued or leased at once; beyond it submissions are refused until workers
#: catch up, rather than growing memory without bound.
MAX_OUTSTANDING = 100_000

#: Most finished results kept for clients that have not collected them; the oldest go.
MAX_UNCOLLECTED = 100_000


@dataclass
class _Worker:
    """A worker the front has heard from, and the tasks it holds."""

    last_seen: float
    tasks: dict[str, str] = field(default_factory=dict)


class QueueFull(RetryLater):
    """More tasks are waiting than the queue's ``max_outstanding``: retry later."""


class TaskQueue:
    """Queued tasks, tasks leased to workers, and results waiting to be collected.

    Thread-safe: every client call and worker call of a front runs on a thread of its own.
    With ``expected_workers`` (the n-node form) nothing is leased until that many workers
    have shown up or :data:`STARTUP_GRACE` passed, so the first worker to start does not
    take the first second's work alone and the load spreads from the first task.
    """

    def __init__(
        self,
        result_log: ResultLog,
        lease_timeout: float = LEASE_TIMEOUT,
        max_outstanding: int = MAX_OUTSTANDING,
        max_uncollected: int = MAX_UNCOLLECTED,
        expected_workers: int = 0,
    ) -> None:
        self._log = result_log
        self._barrier = StartupBarrier(expected_workers, STARTUP_GRACE)
        self._lease_timeout = lease_timeout
        self._max_outstanding = max_outstanding
        self._max_uncollected = max_uncollected
        self._lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)
        self._worker_left = threading.Condition(self._lock)
        self._pending: OrderedDict[str, str] = OrderedDict()
        # Every task not done yet -> the worker holding it, or None while queued.
        self._holder: dict[str, str | None] = {}
        self._workers: dict[str, _Worker] = {}
        self._results: OrderedDict[str, str] = OrderedDict()
        self._waiters: dict[str, list[threading.Event]] = {}
        self._closing = False
        # Ids unique across restarts of the front, so an old id never matches a new task.
        self._prefix = uuid.uuid4().hex[:8]
        self._counter = itertools.count(1)

    # -- clients ---------------------------------------------------------------------

    def submit(self, texts: Sequence[str]) -> list[str]:
        """Queue validated texts; returns their task ids. Raises :class:`QueueFull`."""
        with self._lock:
            if len(self._holder) + len(texts) > self._max_outstanding:
                raise QueueFull(
                    f"the filter queue is full ({len(self._holder)} texts wait, limit "
                    f"{self._max_outstanding}); collect results or retry later"
                )
            ids = [f"{self._prefix}-{next(self._counter)}" for _ in texts]
            for task_id, text in zip(ids, texts, strict=True):
                self._pending[task_id] = text
                self._holder[task_id] = None
            self._work_ready.notify(len(ids))
        return ids

    def collect(self, task_ids: Sequence[str], timeout: float) -> dict[str, str]:
        """Hand out the results of ``task_ids`` that are done, each only once.

        Waits up to ``timeout`` seconds for the first one when none is done yet.
        """
        with self._lock:
            done = self._take(task_ids)
            if done or timeout <= 0:
                return done
            ready = threading.Event()
            for task_id in task_ids:
                self._waiters.setdefault(task_id, []).append(ready)
        ready.wait(timeout)
        with self._lock:
            for task_id in task_ids:
                waiting = self._waiters.get(task_id, [])
                if ready in waiting:
                    waiting.remove(ready)
                if not waiting:
                    self._waiters.pop(task_id, None)
            return self._take(task_ids)

    def _take(self, task_ids: Sequence[str]) -> dict[str, str]:
        return {t: self._results.pop(t) for t in task_ids if t in self._results}

    def outstanding(self) -> int:
        """Tasks accepted and not done yet, queued or leased."""
        with self._lock:
            return len(self._holder)

    # -- workers ---------------------------------------------------------------------

    def register(self, worker_id: str) -> None:
        """A worker (re)starts: whatever a previous process with its id held is re-queued."""
        with self._lock:
            old = self._workers.pop(worker_id, None)
            if old is not None and old.tasks:
                log.warning(
                    "worker %s restarted; re-queuing its %d tasks", worker_id, len(old.tasks)
                )
                self._requeue(old)
            self._workers[worker_id] = _Worker(time.monotonic())
            if self._barrier.arrive(worker_id):
                self._work_ready.notify_all()

    def heartbeat(self, worker_id: str) -> None:
        """The worker is alive."""
        with self._lock:
            self._touch(worker_id)

    def exchange(
        self, worker_id: str, results: dict[str, str], max_tasks: int, wait: float
    ) -> list[tuple[str, str]]:
        """Record a worker's results, then lease it up to ``max_tasks`` new tasks.

        Waits up to ``wait`` seconds for work. A worker gets at most its fair share of
        the queue, so a batch does not starve the other workers.
        """
        deadline = time.monotonic() + wait
        with self._lock:
            self._complete(results)
            self._touch(worker_id)
            while not self._closing and (
                not self._pending or not self._barrier.arrive(worker_id)
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._work_ready.wait(remaining)
            worker = self._touch(worker_id)
            share = math.ceil(len(self._pending) / max(1, len(self._workers)))
            batch = []
            for _ in range(min(max_tasks, share)):
                task_id, text = self._pending.popitem(last=False)
                self._holder[task_id] = worker_id
                worker.tasks[task_id] = text
                batch.append((task_id, text))
            return batch

    def close(self) -> None:
        """The front is stopping: no pull waits for work any more, so workers stopping
        at the same time get their answer at once and can leave."""
        with self._lock:
            self._closing = True
            self._work_ready.notify_all()

    def leave(self, worker_id: str, results: dict[str, str]) -> None:
        """A worker stops cleanly: record its last results, re-queue anything left."""
        with self._lock:
            self._complete(results)
            worker = self._workers.pop(worker_id, None)
            if worker is not None and worker.tasks:
                self._requeue(worker)
            self._worker_left.notify_all()

    def wait_for_workers_to_leave(self, timeout: float) -> int:
        """Wait until every worker has left, or ``timeout``; returns how many are left."""
        with self._lock:
            self._worker_left.wait_for(lambda: not self._workers, timeout)
            return len(self._workers)

    def requeue_silent_workers(self) -> None:
        """Re-queue the tasks of every worker silent for longer than the lease timeout."""
        cutoff = time.monotonic() - self._lease_timeout
        with self._lock:
            silent = [wid for wid, worker in self._workers.items() if worker.last_seen < cutoff]
            for worker_id in silent:
                worker = self._workers.pop(worker_id)
                log.warning(
                    "worker %s was silent for %.0f s; re-queuing its %d tasks",
                    worker_id,
                    self._lease_timeout,
                    len(worker.tasks),
                )
                self._requeue(worker)
            if silent:
                self._worker_left.notify_all()

    # -- internals (lock held) -------------------------------------------------------

    def _touch(self, worker_id: str) -> _Worker:
        worker = self._workers.get(worker_id)
        if worker is None:
            # Unknown: first contact after the front restarted, or after being presumed dead.
            worker = self._workers[worker_id] = _Worker(time.monotonic())
        worker.last_seen = time.monotonic()
        return worker

    def _requeue(self, worker: _Worker) -> None:
        # At the head of the queue, in their original order: they have waited longest.
        for task_id, text in reversed(worker.tasks.items()):
            self._pending[task_id] = text
            self._pending.move_to_end(task_id, last=False)
            self._holder[task_id] = None
        self._work_ready.notify(len(worker.tasks))
        worker.tasks.clear()

    def _complete(self, results: dict[str, str]) -> None:
        for task_id, text in results.items():
            if task_id not in self._holder:
                continue  # done already: a duplicate from a worker presumed dead
            holder = self._holder.pop(task_id)
            if holder is None:
                del self._pending[task_id]
            else:
                self._workers[holder].tasks.pop(task_id, None)
            self._results[task_id] = text
            self._log.append(text)
            for ready in self._waiters.get(task_id, ()):
                ready.set()
        overflow = len(self._results) - self._max_uncollected
        if overflow > 0:
            log.warning("dropping %d uncollected results, the oldest", overflow)
            for _ in range(overflow):
                self._results.popitem(last=False)
