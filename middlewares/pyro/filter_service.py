"""The InsultFilter front: ``python -m middlewares.pyro.filter_service``.

The front owns the work queue (:class:`~middlewares.workqueue.TaskQueue`) and censors
nothing itself. Clients call the :class:`FilterFront` object registered as
``<ns>.insult.filter``; worker processes (:mod:`middlewares.pyro.filter_worker`) pull
leased batches from the same object with a long-poll, censor them and hand the results
back with their next pull. A worker that is SIGKILLed loses nothing: its lease is
re-queued when it misses three heartbeats or when its restart registers under the same
id. Results are kept once per task id.

The front is also the coordinator of the n-node form: a master-held queue that the
worker nodes (``filter_worker --node-id``) pull from. ``--expect-workers N`` makes it
lease nothing until N workers have registered (at most 15 s), so a starting deployment
spreads its first tasks over all of them.
"""

from __future__ import annotations

import logging
import time

import Pyro4

from middlewares.core import Limits, ResultLog, validate_limit, validate_text
from middlewares.pyro._common import (
    INSULT_FILTER,
    build_parser,
    domain_errors,
    publish,
    run_service,
)
from middlewares.runtime import StopSignal
from middlewares.settings import Settings, from_args
from middlewares.workqueue import (
    HEARTBEAT_INTERVAL,
    MAX_BATCH,
    MAX_LIMIT,
    MAX_WAIT,
    WORKER_GRACE,
    QueueFull,
    TaskQueue,
    check_count,
    check_id,
    check_list,
    check_results,
    check_seconds,
)

log = logging.getLogger(__name__)


@Pyro4.expose
class FilterFront:
    """The remote object: client methods first, then the worker protocol.

    Every argument is checked here, so a bad request gets a ValueError naming the
    problem and never reaches the queue.
    """

    def __init__(self, queue: TaskQueue, result_log: ResultLog, settings: Settings) -> None:
        self._queue = queue
        self._result_log = result_log
        self._limits: Limits = settings.limits
        self._default_timeout = min(settings.timeout, MAX_WAIT)

    def submit(self, text: object) -> str:
        """Queue one text; returns its task id."""
        return self._submit([self._text(text)])[0]

    def submit_many(self, texts: object) -> list[str]:
        """Queue several texts at once, all or none; returns their task ids in order."""
        checked = []
        for index, text in enumerate(check_list(texts, "texts")):
            try:
                checked.append(self._text(text))
            except ValueError as error:
                raise ValueError(f"texts[{index}]: {error}") from None
        return self._submit(checked)

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

        Raises TimeoutError after ``timeout`` seconds (default: the service's timeout);
        the task stays queued and ``result(id)``, with the id in the message, returns it.
        """
        wait = self._default_timeout if timeout is None else check_seconds(timeout, "timeout")
        task_id = self.submit(text)
        done = self._queue.collect([task_id], wait)
        if task_id not in done:
            raise TimeoutError(f"task {task_id} got no result within {wait:g} s")
        return done[task_id]

    def get_results(self, limit: object = 100) -> list[str]:
        """Up to ``limit`` censored texts from the result list, newest first."""
        with domain_errors():
            return self._result_log.newest(validate_limit(limit, MAX_LIMIT))

    def worker_register(self, worker_id: object) -> float:
        """Worker protocol: a worker starts; returns the heartbeat interval in seconds."""
        self._queue.register(check_id(worker_id, "worker id"))
        return HEARTBEAT_INTERVAL

    def worker_heartbeat(self, worker_id: object) -> None:
        """Worker protocol: the worker is alive (call every heartbeat interval)."""
        self._queue.heartbeat(check_id(worker_id, "worker id"))

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

    def worker_leave(self, worker_id: object, results: object) -> None:
        """Worker protocol: last results of a worker that stops; its other tasks go back."""
        self._queue.leave(check_id(worker_id, "worker id"), check_results(results))

    def _text(self, text: object) -> str:
        with domain_errors():
            return validate_text(text, self._limits)

    def _submit(self, texts: list[str]) -> list[str]:
        try:
            return self._queue.submit(texts)
        except QueueFull as error:
            raise RuntimeError(str(error)) from None


def serve(settings: Settings, expected_workers: int = 0) -> None:
    """Publish the front and re-queue the tasks of silent workers until SIGINT or SIGTERM."""
    stop = StopSignal()
    result_log = ResultLog(settings.result_limit)
    queue = TaskQueue(result_log, expected_workers=expected_workers)
    front = FilterFront(queue, result_log, settings)
    with publish(settings, {INSULT_FILTER: front}):
        while not stop.wait(HEARTBEAT_INTERVAL):
            queue.requeue_silent_workers()
        # The launcher stops the workers at the same time: let them hand in what they hold.
        deadline = time.monotonic() + WORKER_GRACE
        while queue.wait_for_workers_to_leave(HEARTBEAT_INTERVAL):
            if time.monotonic() >= deadline:
                log.warning("some workers did not leave within %g s", WORKER_GRACE)
                break
            queue.requeue_silent_workers()
    if left := queue.outstanding():
        log.warning("stopping with %d accepted texts not filtered yet", left)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.pyro.filter_service``."""
    parser = build_parser(
        "middlewares.pyro.filter_service",
        "Serve the InsultFilter front as <namespace>.insult.filter in a Pyro4 name server; "
        "workers (middlewares.pyro.filter_worker) do the censoring. Usually started by "
        "`python -m middlewares serve pyro filter --workers N`.",
    )
    parser.add_argument(
        "--expect-workers",
        type=int,
        default=0,
        metavar="N",
        help="lease no task until N workers have registered (at most 15 s), so the first "
        "tasks spread over all of them (default: 0, no wait)",
    )
    args = parser.parse_args(argv)
    settings = from_args(args)
    run_service("pyro-filter-front", lambda: serve(settings, args.expect_workers))


if __name__ == "__main__":
    main()
