"""The InsultFilter work queue of the direct middlewares: queued tasks, tasks leased to
workers, results waiting to be collected.

Nothing accepted is lost while the front runs: a task pulled by a worker is *leased* to
it, and goes back to the head of the queue when that worker re-registers under the same
id (a restarted worker) or misses three heartbeats (a dead or stuck one). Only the
worker holding a task's lease can hand in its result; a task counts as done the first
time its result arrives. At most once (``redeliver=False``) there are no leases: what a
worker that died or was presumed dead held is dropped, never handed out again, so no
task is computed twice and a crash loses at most what the dead worker held.

Nothing accepted is lost when the front dies either: with a :class:`Journal` (the n-node
form keeps one in Redis) every task stays there from its acceptance until its result is
collected, and a restarted front queues them again; without one, clients submit under
ids of their own (:meth:`TaskQueue.submit_tasks`) and submit again what a restarted
front does not know (:meth:`TaskQueue.collect_known` says which).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from middlewares.contract import RetryLater
from middlewares.core import ResultLog
from middlewares.direct.checks import BATCH_CHARS, new_task_id
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


class Journal(Protocol):
    """Where a durable queue keeps every task from its acceptance until its result is
    collected, so that a restarted front serves them (see :mod:`middlewares.cluster.journal`)."""

    def add(self, tasks: Mapping[str, str]) -> None:
        """Keep these tasks (id -> text); raises
        :class:`~middlewares.contract.RetryLater` when they could not be kept."""
        ...

    def remove(self, task_ids: Sequence[str]) -> None:
        """Forget these tasks (their results were handed out); never raises, and may
        take effect a moment later."""
        ...

    def load(self) -> dict[str, str]:
        """Every task kept, id -> text."""
        ...


class TaskQueue:
    """Queued tasks, tasks leased to workers, and results waiting to be collected.

    Thread-safe: every client call and worker call of a front runs on a thread of its own.
    With ``expected_workers`` (the n-node form) nothing is leased until that many workers
    have shown up or :data:`STARTUP_GRACE` passed, so the first worker to start does not
    take the first second's work alone and the load spreads from the first task. With a
    ``journal``, the tasks it holds are queued at once. Without ``redeliver``
    (at-most-once) the tasks of a worker that restarts or falls silent are dropped, and
    counted in :attr:`dropped`, instead of being queued again.
    """

    def __init__(
        self,
        result_log: ResultLog,
        lease_timeout: float = LEASE_TIMEOUT,
        max_outstanding: int = MAX_OUTSTANDING,
        max_uncollected: int = MAX_UNCOLLECTED,
        expected_workers: int = 0,
        journal: Journal | None = None,
        redeliver: bool = True,
    ) -> None:
        self._log = result_log
        self._redeliver = redeliver
        #: Tasks dropped with a worker that died holding them (at-most-once only).
        self.dropped = 0
        self._journal = journal
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
        if journal is not None:
            kept = journal.load()
            self._pending.update(kept)
            self._holder.update(dict.fromkeys(kept))
            if kept:
                log.info("queued again the %d accepted tasks of the journal", len(kept))

    # -- clients ---------------------------------------------------------------------

    def submit(self, texts: Sequence[str]) -> list[str]:
        """Queue validated texts under new ids; returns the ids. Raises :class:`QueueFull`."""
        ids = [new_task_id() for _ in texts]
        self._accept(dict(zip(ids, texts, strict=True)))
        return ids

    def submit_tasks(self, tasks: Mapping[str, str]) -> int:
        """Queue validated texts under the client's ids; an id the queue holds already
        (queued, leased, or done and not collected) is a resubmission and not queued
        again. Returns how many were new. Raises :class:`QueueFull`."""
        return self._accept(tasks)

    def _accept(self, tasks: Mapping[str, str]) -> int:
        with self._lock:
            fresh = {t: text for t, text in tasks.items() if not self._holds(t)}
            if len(self._holder) + len(fresh) > self._max_outstanding:
                raise QueueFull(
                    f"the filter queue is full ({len(self._holder)} texts wait, limit "
                    f"{self._max_outstanding}); collect results or retry later"
                )
            if self._journal is None:
                return self._enqueue(fresh)
        # Kept before it is queued (and outside the lock: it is a round trip to Redis),
        # so that an accepted task is never only in this process.
        if fresh:
            self._journal.add(fresh)
        with self._lock:
            return self._enqueue({t: text for t, text in fresh.items() if not self._holds(t)})

    def _enqueue(self, tasks: Mapping[str, str]) -> int:
        for task_id, text in tasks.items():
            self._pending[task_id] = text
            self._holder[task_id] = None
        self._work_ready.notify(len(tasks))
        return len(tasks)

    def collect(self, task_ids: Sequence[str], timeout: float) -> dict[str, str]:
        """Hand out the results of ``task_ids`` that are done, each only once, up to
        :data:`~middlewares.direct.checks.BATCH_CHARS` characters of them (at least one).

        Waits up to ``timeout`` seconds for the first one when none is done yet.
        """
        return self.collect_known(task_ids, timeout)[0]

    def collect_known(
        self, task_ids: Sequence[str], timeout: float
    ) -> tuple[dict[str, str], list[str]]:
        """:meth:`collect`, and which of the ids not done the queue does not know: never
        submitted here (the front restarted), collected already, or dropped uncollected."""
        ready: threading.Event | None = None
        with self._lock:
            done = self._take(task_ids)
            if not done and timeout > 0:
                ready = threading.Event()
                for task_id in task_ids:
                    self._waiters.setdefault(task_id, []).append(ready)
            else:
                unknown = self._unknown(task_ids, done)
        if ready is not None:
            ready.wait(timeout)
            with self._lock:
                for task_id in task_ids:
                    waiting = self._waiters.get(task_id, [])
                    if ready in waiting:
                        waiting.remove(ready)
                    if not waiting:
                        self._waiters.pop(task_id, None)
                done = self._take(task_ids)
                unknown = self._unknown(task_ids, done)
        if done and self._journal is not None:
            self._journal.remove(list(done))
        return done, unknown

    def _unknown(self, task_ids: Sequence[str], done: Mapping[str, str]) -> list[str]:
        return [t for t in task_ids if t not in done and not self._holds(t)]

    def _holds(self, task_id: str) -> bool:
        return task_id in self._holder or task_id in self._results

    def _take(self, task_ids: Sequence[str]) -> dict[str, str]:
        done: dict[str, str] = {}
        chars = 0
        for task_id in task_ids:
            text = self._results.get(task_id)
            if text is None:
                continue
            if done and chars + len(text) > BATCH_CHARS:
                break  # the rest goes in the next reply
            done[task_id] = self._results.pop(task_id)
            chars += len(text)
        return done

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
                self._lose(old, f"worker {worker_id} restarted")
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
        """Record a worker's results, then lease it up to ``max_tasks`` new tasks, of at
        most :data:`~middlewares.direct.checks.BATCH_CHARS` characters (at least one).

        Waits up to ``wait`` seconds for work. A worker gets at most its fair share of
        the queue, so a batch does not starve the other workers.
        """
        deadline = time.monotonic() + wait
        with self._lock:
            done = self._complete(worker_id, results)
            self._touch(worker_id)
        _wake(done)
        with self._lock:
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
            chars = 0
            for _ in range(min(max_tasks, share)):
                task_id, text = next(iter(self._pending.items()))
                if batch and chars + len(text) > BATCH_CHARS:
                    break  # kept for the next pull, so results fit one message too
                del self._pending[task_id]
                self._holder[task_id] = worker_id
                worker.tasks[task_id] = text
                batch.append((task_id, text))
                chars += len(text)
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
            done = self._complete(worker_id, results)
            worker = self._workers.pop(worker_id, None)
            if worker is not None and worker.tasks:
                self._requeue(worker)
            self._worker_left.notify_all()
        _wake(done)

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
                self._lose(worker, f"worker {worker_id} was silent for {self._lease_timeout:g} s")
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

    def _lose(self, worker: _Worker, why: str) -> None:
        """A worker died holding tasks: re-queue them (at-least-once) or drop them."""
        if self._redeliver:
            log.warning("%s; re-queuing its %d tasks", why, len(worker.tasks))
            self._requeue(worker)
            return
        log.warning("%s; dropping its %d tasks (at-most-once)", why, len(worker.tasks))
        for task_id in worker.tasks:
            del self._holder[task_id]
        self.dropped += len(worker.tasks)
        worker.tasks.clear()

    def _requeue(self, worker: _Worker) -> None:
        # At the head of the queue, in their original order: they have waited longest.
        for task_id, text in reversed(worker.tasks.items()):
            self._pending[task_id] = text
            self._pending.move_to_end(task_id, last=False)
            self._holder[task_id] = None
        self._work_ready.notify(len(worker.tasks))
        worker.tasks.clear()

    def _complete(self, worker_id: str, results: dict[str, str]) -> set[threading.Event]:
        """Record the results a worker hands in; returns the waiting clients to wake (once
        the lock is released, so that they do not wake only to wait for it)."""
        refused = 0
        waiting: set[threading.Event] = set()
        for task_id, text in results.items():
            if self._holder.get(task_id) != worker_id:
                # Not leased to this worker: done already, or re-queued when it was
                # presumed dead, or never its own. Only the lease holder may answer.
                refused += 1
                continue
            del self._holder[task_id]
            self._workers[worker_id].tasks.pop(task_id, None)
            self._results[task_id] = text
            self._log.append(text)
            waiting.update(self._waiters.get(task_id, ()))
        if refused:
            log.info("refused %d results of %s for tasks not leased to it", refused, worker_id)
        overflow = len(self._results) - self._max_uncollected
        if overflow > 0:
            log.warning("dropping %d uncollected results, the oldest", overflow)
            dropped = [self._results.popitem(last=False)[0] for _ in range(overflow)]
            if self._journal is not None:
                self._journal.remove(dropped)
        return waiting


def _wake(waiting: set[threading.Event]) -> None:
    """Wake each waiting client once, however many of its tasks are done."""
    for ready in waiting:
        ready.set()
