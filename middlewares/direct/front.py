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
    check_secret,
    check_tasks,
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
    problem and never reaches the queue. Every worker call must carry the deployment
    ``secret`` (PermissionError otherwise), so only the deployment's workers lease tasks
    and hand in results. A ``filter`` that got no result in time raises
    ``TimeoutError`` and a submission to a full queue
    :class:`~middlewares.direct.queue.QueueFull`; each transport turns them into what
    its protocol carries. No method returns None, so every reply is plain XML-RPC too.
    """

    #: The names a transport exposes: nothing else of this class is remote.
    REMOTE_METHODS = (
        "submit",
        "submit_many",
        "submit_tasks",
        "result",
        "wait_results",
        "wait_tasks",
        "filter",
        "get_results",
        "worker_register",
        "worker_heartbeat",
        "worker_exchange",
        "worker_leave",
    )

    def __init__(
        self, queue: TaskQueue, result_log: ResultLog, settings: Settings, secret: str
    ) -> None:
        self._queue = queue
        self._secret = secret
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

    def submit_tasks(self, tasks: object) -> int:
        """Queue texts under ids the client chose (``{task id: text}``), all or none; an
        id the front holds already is a resubmission and is not queued again. Returns
        how many were new."""
        checked = {}
        for index, (task_id, text) in enumerate(check_tasks(tasks).items()):
            try:
                checked[task_id] = self._text(text)
            except ValueError as error:
                raise ValueError(f"texts[{index}]: {error}") from None
        return self._queue.submit_tasks(checked)

    def result(self, task_id: object) -> str:
        """The censored text of a task, handed out once; "" while pending (or unknown)."""
        task_id = check_id(task_id)
        return self._queue.collect([task_id], 0).get(task_id, "")

    def wait_results(self, task_ids: object, timeout: object) -> dict[str, str]:
        """The censored texts of those of ``task_ids`` that are done, by id, each handed
        out once; blocks up to ``timeout`` seconds until at least one is."""
        return self._queue.collect(self._ids(task_ids), check_seconds(timeout, "timeout"))

    def wait_tasks(self, task_ids: object, timeout: object) -> dict[str, object]:
        """:meth:`wait_results`, telling also which ids the front does not know (a
        restarted front, or collected already): ``{"done": {id: text}, "unknown": [id]}``.
        A client submits those of its tasks again, under the same ids."""
        done, unknown = self._queue.collect_known(
            self._ids(task_ids), check_seconds(timeout, "timeout")
        )
        return {"done": done, "unknown": unknown}

    def filter(self, text: object, timeout: object = None, task_id: object = None) -> str:
        """Submit one text and wait for its censored form, in one round trip.

        After ``timeout`` seconds (default: the service's timeout) the error names the
        task id; the task stays queued and ``result(id)`` returns it later. With
        ``task_id`` the text is submitted under that id, as by :meth:`submit_tasks`, so
        a client repeating a call cut short by a restart gets one answer.
        """
        wait = self._default_timeout if timeout is None else check_seconds(timeout, "timeout")
        if task_id is None:
            task_id = self.submit(text)
        else:
            task_id = check_id(task_id)
            self._queue.submit_tasks({task_id: self._text(text)})
        done = self._queue.collect([task_id], wait)
        if task_id not in done:
            raise TimeoutError(f"task {task_id} got no result within {wait:g} s")
        return done[task_id]

    def get_results(self, limit: object = 100) -> list[str]:
        """Up to ``limit`` censored texts from the result list, newest first."""
        return self._result_log.newest(validate_limit(limit, MAX_LIMIT))

    def worker_register(self, worker_id: object, secret: object) -> float:
        """Worker protocol: a worker starts; returns the heartbeat interval in seconds."""
        self._queue.register(self._worker(worker_id, secret))
        return HEARTBEAT_INTERVAL

    def worker_heartbeat(self, worker_id: object, secret: object) -> bool:
        """Worker protocol: the worker is alive (call every heartbeat interval)."""
        self._queue.heartbeat(self._worker(worker_id, secret))
        return True

    def worker_exchange(
        self, worker_id: object, secret: object, results: object, max_tasks: object, wait: object
    ) -> list[tuple[str, str]]:
        """Worker protocol: hand in results ``{id: text}`` of tasks leased to this worker,
        get ``[(id, text), ...]`` back, waiting up to ``wait`` seconds (at most one
        heartbeat interval) for work."""
        return self._queue.exchange(
            self._worker(worker_id, secret),
            check_results(results),
            check_count(max_tasks, "max_tasks", MAX_BATCH),
            min(check_seconds(wait, "wait"), HEARTBEAT_INTERVAL),
        )

    def worker_leave(self, worker_id: object, secret: object, results: object) -> bool:
        """Worker protocol: last results of a worker that stops; its other tasks go back."""
        self._queue.leave(self._worker(worker_id, secret), check_results(results))
        return True

    def _worker(self, worker_id: object, secret: object) -> str:
        check_secret(secret, self._secret)
        return check_id(worker_id, "worker id")

    def _ids(self, task_ids: object) -> list[str]:
        return [check_id(task_id) for task_id in check_list(task_ids, "task_ids")]

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
