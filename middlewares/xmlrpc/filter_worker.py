"""A filter worker process: ``python -m middlewares.xmlrpc.filter_worker --worker-id ID``.

The worker pulls leased batches of tasks from the front (``/<ns>/filter`` on the filter
port) with a long-poll, censors them and hands the results back with its next pull; the
loop is :class:`~middlewares.workqueue.PullWorker`, shared with the Pyro4 form. Here it
gets its two XML-RPC connections to the front (pulls, heartbeats) and its insult list:
``get_insults`` of the InsultService at ``/<ns>/insult`` on the insult port, re-read at
most every ``insult_refresh`` seconds; the default list when none answers there.

Killed, the worker stops heartbeating and its restart re-registers under the same id;
either way the front re-queues what it held. On SIGTERM it finishes the batch it holds,
hands the results in, leaves and exits 0.

With ``--node-id ID`` instead of ``--worker-id`` it is a node of the n-node form: the
front is the coordinator (a master-held queue the nodes pull from), the worker id is the
node id (so a restarted node reclaims its lease at once), and the tasks it serves are
counted in Redis (:class:`middlewares.cluster.NodeCounters`, service ``filter``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from middlewares.cluster import NodeCounters, redis_client
from middlewares.contract import MiddlewareError
from middlewares.runtime import StopSignal
from middlewares.settings import Settings, from_args
from middlewares.workqueue import PullWorker
from middlewares.xmlrpc._common import (
    NotServing,
    Remote,
    build_parser,
    node_id,
    run_service,
    serve_hint,
    service_url,
)
from middlewares.xmlrpc.clients import InsultNodes

#: Longest a refresh of the insult list may take: it holds up the batch being censored.
REFRESH_TIMEOUT = 1.0


class _InsultList:
    """Reads the InsultService's list, in either form (see :class:`InsultNodes`)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings.with_changes(timeout=min(settings.timeout, REFRESH_TIMEOUT))
        self._service: InsultNodes | None = None

    def fetch(self) -> list[str] | None:
        """The current list, or None when no InsultService runs in the namespace."""
        try:
            if self._service is None:
                self._service = InsultNodes(self._settings)
            return self._service.call("get_insults")
        except NotServing:
            # None here: censor the defaults, and look for one again next time.
            self.close()
            return None

    def close(self) -> None:
        """Close the connections."""
        if self._service is not None:
            self._service.close()
            self._service = None


@contextlib.contextmanager
def _node_counter(settings: Settings, node: str | None) -> Iterator[Callable[[int], None] | None]:
    """The ``served`` of a node's worker: its counter in Redis; None for a plain worker."""
    if node is None:
        yield None
        return
    client = redis_client(settings)
    try:
        counters = NodeCounters(client, settings.namespace, "filter", node, resume=True)
        try:
            yield counters.increment
        finally:
            counters.close()
    finally:
        client.close()


def serve(settings: Settings, worker_id: str, node: str | None = None) -> None:
    """Run one worker until SIGINT or SIGTERM; ``node`` makes it a node of the n-node form."""
    stop = StopSignal()
    front_url = service_url(settings, "filter")
    insults = _InsultList(settings)
    with _node_counter(settings, node) as served:
        worker = PullWorker(
            settings,
            worker_id,
            stop,
            front=Remote(front_url, serve_hint("filter"), settings.timeout),
            heart=Remote(front_url, serve_hint("filter"), settings.timeout),
            fetch_insults=insults.fetch,
            served=served,
        )
        try:
            worker.run()
        except MiddlewareError as error:
            print(
                f"error: worker {worker_id} cannot reach the filter front: {error}",
                file=sys.stderr,
            )
            sys.exit(2)
        finally:
            insults.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.xmlrpc.filter_worker``."""
    parser = build_parser(
        "middlewares.xmlrpc.filter_worker",
        "Censor texts pulled from the InsultFilter front at "
        "http://HOST:FILTER_PORT/NAMESPACE/filter. "
        "Usually started by `python -m middlewares serve xmlrpc filter --workers N` "
        "(or --nodes N).",
    )
    identity = parser.add_mutually_exclusive_group(required=True)
    identity.add_argument(
        "--worker-id",
        type=node_id,
        metavar="ID",
        help="stable id of this worker: a restart with the same id recovers its tasks",
    )
    identity.add_argument(
        "--node-id",
        type=node_id,
        metavar="ID",
        help="run as node ID of the n-node form: the worker id is the node id, and the "
        "tasks served are counted in Redis",
    )
    args = parser.parse_args(argv)
    settings = from_args(args)
    worker_id = args.node_id or args.worker_id
    run_service(
        f"xmlrpc-filter-worker[{worker_id}]", lambda: serve(settings, worker_id, args.node_id)
    )


if __name__ == "__main__":
    main()
