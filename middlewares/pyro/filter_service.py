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

from middlewares.core import ResultLog
from middlewares.pyro._common import (
    INSULT_FILTER,
    build_parser,
    expose_methods,
    publish,
    run_service,
)
from middlewares.runtime import StopSignal
from middlewares.settings import Settings, from_args
from middlewares.workqueue import QueueFront, TaskQueue, tend


@expose_methods(QueueFront.REMOTE_METHODS)
class FilterFront(QueueFront):
    """The front as a Pyro4 object: :class:`~middlewares.workqueue.QueueFront`, whose
    errors (TimeoutError, RuntimeError, ValueError) are builtins serpent carries."""


def serve(settings: Settings, expected_workers: int = 0) -> None:
    """Publish the front and re-queue the tasks of silent workers until SIGINT or SIGTERM."""
    stop = StopSignal()
    result_log = ResultLog(settings.result_limit)
    queue = TaskQueue(result_log, expected_workers=expected_workers)
    front = FilterFront(queue, result_log, settings)
    with publish(settings, {INSULT_FILTER: front}):
        tend(queue, stop)


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
