"""A filter worker process: ``python -m middlewares.xmlrpc.filter_worker --worker-id ID``.

The worker pulls leased batches of tasks from the front (``/<ns>/filter`` on the filter
port) with a long-poll, censors them and hands the results back with its next pull; the
loop is :class:`~middlewares.workqueue.PullWorker`, shared with the Pyro4 form. Here it
gets its two XML-RPC connections to the front (pulls, heartbeats) and its insult list:
``get_insults`` of the InsultService at ``/<ns>/insult`` on the insult port, re-read at
most every ``insult_refresh`` seconds; the default list when none answers there.

Killed, the worker stops heartbeating and its restart re-registers under the same id;
either way the front re-queues what it held. On SIGTERM it finishes the batch it holds,
hands the results in and leaves.
"""

from __future__ import annotations

import sys

from middlewares.contract import MiddlewareError
from middlewares.runtime import StopSignal
from middlewares.settings import Settings, from_args
from middlewares.workqueue import PullWorker
from middlewares.xmlrpc._common import (
    NotServing,
    Remote,
    build_parser,
    run_service,
    serve_hint,
    service_url,
)

#: Longest a refresh of the insult list may take: it holds up the batch being censored.
REFRESH_TIMEOUT = 1.0


def serve(settings: Settings, worker_id: str) -> None:
    """Run one worker until SIGINT or SIGTERM."""
    stop = StopSignal()
    front_url = service_url(settings, "filter")
    refresh_timeout = min(settings.timeout, REFRESH_TIMEOUT)
    insult_service = Remote(service_url(settings, "insult"), serve_hint("insult"), refresh_timeout)

    def fetch_insults() -> list[str] | None:
        try:
            return insult_service.call("get_insults")
        except NotServing:
            return None  # no InsultService in this namespace: censor the defaults

    worker = PullWorker(
        settings,
        worker_id,
        stop,
        front=Remote(front_url, serve_hint("filter"), settings.timeout),
        heart=Remote(front_url, serve_hint("filter"), settings.timeout),
        fetch_insults=fetch_insults,
    )
    try:
        worker.run()
    except MiddlewareError as error:
        print(f"error: worker {worker_id} cannot reach the filter front: {error}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.xmlrpc.filter_worker``."""
    parser = build_parser(
        "middlewares.xmlrpc.filter_worker",
        "Censor texts pulled from the InsultFilter front at "
        "http://HOST:FILTER_PORT/NAMESPACE/filter. "
        "Usually started by `python -m middlewares serve xmlrpc filter --workers N`.",
    )
    parser.add_argument(
        "--worker-id",
        required=True,
        help="stable id of this worker: a restart with the same id recovers its tasks",
    )
    args = parser.parse_args(argv)
    settings = from_args(args)
    run_service(f"xmlrpc-filter-worker {args.worker_id}", lambda: serve(settings, args.worker_id))


if __name__ == "__main__":
    main()
