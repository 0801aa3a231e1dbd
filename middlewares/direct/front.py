"""The filter front of the direct middlewares: the queue's remote methods, on any
transport, and the front's main loop.
"""

from __future__ import annotations

import logging
import time

from middlewares.core import Limits, ResultLog, validate_limit, validate_text
from middlewares.direct.checks import (
    MAX_BATCH,
    MAX_WAIT,
    check_count,
    check_id,
    check_list,
    check_results,
    check_seconds,
)
from middlewares.direct.queue import HEARTBEAT_INTERVAL, TaskQueue
from middlewares.runtime import StopSignal
from middlewares.settings import Settings

log = logging.getLogger(__name__)


#: How long a stopping front waits for its workers to hand in their last results.
WORKER_GRACE = 5.0

#: Largest ``limit`` of get_results (a 32-bit integer); it returns at most result_limit.
MAX_LIMIT = 2**31 - 1


class QueueFront:
    """The remote methods of a filter front, on any transport: client methods first,
    then the worker protocol (see docs/PROTOCOL.md).

    Every argument is checked here, so a bad request gets a ValueError naming the
    problem and never reaches the queue. A ``filter`` that got no result in time raises
    ``TimeoutError`` and a submission to a full queue
    :class:`~middlewares.direct.queue.QueueFull`; each transport turns them into what
    its protocol carries. No method returns None, so every reply is plain XML-RPC too.
    """

    #: The names a transport exposes: nothing else of this class is remote.
    REMOTE_METHODS = (
        "submit",
        "submit_many",
        "result",
        "wait_results",
        "filter",
        "get_results",
        "worker_register",
        "worker_heartbeat",
        "worker_exchange",
        "worker_leave",
    )

    def __init__(self, queue: TaskQueue, result_log: ResultLog, settings: Settings) -> None:
        self._queue = queue
        self._result_log = result_log
        self._limits: Limits = settings.limits
        self._default_timeout = min(settings.timeout, MAX_WAIT)

    def submit(self, text: object) -> str:
        """Queue one text; returns its task id."""
        return self._queue.submit([self._text(text)])[0]

    def submit_many(self, texts: object) -> list[str]:
        """Queue several texts at once, all or none; returns their task ids in order."""
        checked = []
        for index, text in enumerate(check_list(texts, "texts")):
            try:
                checked.append(self._text(text))
            except ValueError as error:
                raise ValueError(f"texts[{index}]: {error}") from None
        return self._queue.submit(checked)

    def result(self, task_id: object) -> str:
        """The censored text of a task, handed out once; "" while pending (or unknown)."""
        task_id = check_id(task_id)
        return self._queue.collect([task_id], 0).get(task_id, "")

    def wait_results(self, task_ids: object, timeout: object) -> dict[str, str]:
        """The censored texts of those of ``task_ids`` that are done, by id, each handed
        out once; blocks up to ``timeout`` seconds until at least one is."""
        ids = [check_id(task_id) for task_id in check_list(task_ids, "task_ids")]
        return self._queue.collect(ids, check_seconds(timeout, "timeout"))

    def filter(self, text: object, timeout: object = None) -> str:
        """Submit one text and wait for its censored form, in one round trip.

        After ``timeout`` seconds (default: the service's timeout) the error names the
        task id; the task stays queued and ``result(id)`` returns it later.
        """
        wait = self._default_timeout if timeout is None else check_seconds(timeout, "timeout")
        task_id = self.submit(text)
        done = self._queue.collect([task_id], wait)
        if task_id not in done:
            raise TimeoutError(f"task {task_id} got no result within {wait:g} s")
        return done[task_id]

    def get_results(self, limit: object = 100) -> list[str]:
        """Up to ``limit`` censored texts from the result list, newest first."""
        return self._result_log.newest(validate_limit(limit, MAX_LIMIT))

    def worker_register(self, worker_id: object) -> float:
        """Worker protocol: a worker starts; returns the heartbeat interval in seconds."""
        self._queue.register(check_id(worker_id, "worker id"))
        return HEARTBEAT_INTERVAL

    def worker_heartbeat(self, worker_id: object) -> bool:
        """Worker protocol: the worker is alive (call every heartbeat interval)."""
        self._queue.heartbeat(check_id(worker_id, "worker id"))
        return True

    def worker_exchange(
        self, worker_id: object, results: object, max_tasks: object, wait: object
    ) -> list[tuple[str, str]]:
        """Worker protocol: hand in results ``{id: text}``, get ``[(id, text), ...]`` back,
        waiting up to ``wait`` seconds (at most one heartbeat interval) for work."""
        return self._queue.exchange(
            check_id(worker_id, "worker id"),
            check_results(results),
            check_count(max_tasks, "max_tasks", MAX_BATCH),
            min(check_seconds(wait, "wait"), HEARTBEAT_INTERVAL),
        )

    def worker_leave(self, worker_id: object, results: object) -> bool:
        """Worker protocol: last results of a worker that stops; its other tasks go back."""
        self._queue.leave(check_id(worker_id, "worker id"), check_results(results))
        return True

    def _text(self, text: object) -> str:
        return validate_text(text, self._limits)


def tend(queue: TaskQueue, stop: StopSignal) -> None:
    """A front's main loop: re-queue the tasks of silent workers until ``stop``, then give
    the workers (stopped by the launcher at the same time) :data:`WORKER_GRACE` seconds
    to hand in what they hold."""
    while not stop.wait(HEARTBEAT_INTERVAL):
        queue.requeue_silent_workers()
    queue.close()
    deadline = time.monotonic() + WORKER_GRACE
    while queue.wait_for_workers_to_leave(HEARTBEAT_INTERVAL):
        if time.monotonic() >= deadline:
            log.warning("some workers did not leave within %g s", WORKER_GRACE)
            break
        queue.requeue_silent_workers()
    if left := queue.outstanding():
        log.warning("stopping with %d accepted texts not filtered yet", left)
