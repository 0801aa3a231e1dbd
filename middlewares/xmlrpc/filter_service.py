"""The InsultFilter front: ``python -m middlewares.xmlrpc.filter_service``.

The front owns the work queue (:class:`~middlewares.workqueue.TaskQueue`) and censors
nothing itself. Clients call :class:`FilterFront` at
``http://<host>:<filter-port>/<ns>/filter``; worker processes
(:mod:`middlewares.xmlrpc.filter_worker`) pull leased batches from the same URL with a
long-poll, censor them and hand the results back with their next pull. A worker that is
SIGKILLed loses nothing: its lease is re-queued when it misses three heartbeats or when
its restart registers under the same id. Results are kept once per task id.

The front is also the coordinator of the n-node form: a master-held queue that the
worker nodes (``filter_worker --node-id``) pull from. ``--expect-workers N`` makes it
lease nothing until N workers have registered (at most 15 s), so a starting deployment
spreads its first tasks over all of them.
"""

from __future__ import annotations

import xmlrpc.client
from collections.abc import Callable
from typing import Any

from middlewares.core import ResultLog
from middlewares.runtime import StopSignal
from middlewares.settings import Settings, from_args
from middlewares.workqueue import STARTUP_GRACE, QueueFront, TaskQueue, tend
from middlewares.xmlrpc._common import (
    APPLICATION_ERROR,
    WAIT_TIMEOUT,
    build_parser,
    count_argument,
    run_service,
    serving,
)


class FilterFront(QueueFront):
    """The front's XML-RPC methods: :class:`~middlewares.workqueue.QueueFront`, with a
    ``filter`` that got no result in time answered by fault :data:`WAIT_TIMEOUT` and a
    full queue by :data:`APPLICATION_ERROR`."""

    def methods(self) -> dict[str, Callable[..., Any]]:
        """The XML-RPC methods, by name."""
        return {name: getattr(self, name) for name in self.REMOTE_METHODS}

    def _timed_out(self, message: str) -> Exception:
        return xmlrpc.client.Fault(WAIT_TIMEOUT, message)

    def _refused(self, message: str) -> Exception:
        return xmlrpc.client.Fault(APPLICATION_ERROR, message)


def serve(settings: Settings, expected_workers: int = 0) -> None:
    """Serve the front and re-queue the tasks of silent workers until SIGINT or SIGTERM."""
    stop = StopSignal()
    result_log = ResultLog(settings.result_limit)
    queue = TaskQueue(result_log, expected_workers=expected_workers)
    front = FilterFront(queue, result_log, settings)
    with serving(settings, "filter", front.methods()):
        tend(queue, stop)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.xmlrpc.filter_service``."""
    parser = build_parser(
        "middlewares.xmlrpc.filter_service",
        "Serve the InsultFilter front at http://HOST:FILTER_PORT/NAMESPACE/filter; "
        "workers (middlewares.xmlrpc.filter_worker) do the censoring. Usually started by "
        "`python -m middlewares serve xmlrpc filter --workers N` (or --nodes N).",
    )
    parser.add_argument(
        "--expect-workers",
        type=count_argument,
        default=0,
        metavar="N",
        help="lease no task until N workers have registered (at most "
        f"{STARTUP_GRACE:g} s), so the first tasks spread over all of them "
        "(default: 0, no wait)",
    )
    args = parser.parse_args(argv)
    settings = from_args(args)
    run_service("xmlrpc-filter-front", lambda: serve(settings, args.expect_workers))


if __name__ == "__main__":
    main()
