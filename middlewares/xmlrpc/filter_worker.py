"""A filter worker process: ``python -m middlewares.xmlrpc.filter_worker --worker-id ID``.

The worker pulls leased batches of tasks from the front (``/<ns>/filter`` on the filter
port) with a long-poll, censors them and hands the results back with its next pull; the
process body is :func:`~middlewares.workqueue.serve_worker`, shared with the Pyro4 form.
Here it gets its two XML-RPC connections to the front (pulls, heartbeats) and its insult
list: ``get_insults`` of the InsultService at ``/<ns>/insult`` on the insult port (either
form), re-read at most every ``insult_refresh`` seconds; the default list when none
answers there.

Killed, the worker stops heartbeating and its restart re-registers under the same id;
either way the front re-queues what it held. On SIGTERM it finishes the batch it holds,
hands the results in, leaves and exits 0.

With ``--node-id ID`` instead of ``--worker-id`` it is a node of the n-node form: the
front is the coordinator (a master-held queue the nodes pull from), the worker id is the
node id (so a restarted node reclaims its lease at once), and the tasks it serves are
counted in Redis (:class:`middlewares.cluster.NodeCounters`, service ``filter``).
"""

from __future__ import annotations

from middlewares.settings import Settings, from_args
from middlewares.workqueue import InsultListReader, add_worker_identity, serve_worker
from middlewares.xmlrpc._common import (
    NotServing,
    Remote,
    build_parser,
    run_service,
    serve_hint,
    service_url,
)
from middlewares.xmlrpc.clients import XmlRpcInsultClient


def serve(settings: Settings, worker_id: str, node: str | None = None) -> None:
    """Run one worker until SIGINT or SIGTERM; ``node`` makes it a node of the n-node form."""
    front_url = service_url(settings, "filter")
    serve_worker(
        settings,
        worker_id,
        node,
        connect_front=lambda: Remote(front_url, serve_hint("filter"), settings.timeout),
        insults=InsultListReader(settings, XmlRpcInsultClient, absent=NotServing),
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.xmlrpc.filter_worker``."""
    parser = build_parser(
        "middlewares.xmlrpc.filter_worker",
        "Censor texts pulled from the InsultFilter front at "
        "http://HOST:FILTER_PORT/NAMESPACE/filter. "
        "Usually started by `python -m middlewares serve xmlrpc filter --workers N` "
        "(or --nodes N).",
    )
    add_worker_identity(parser)
    args = parser.parse_args(argv)
    settings = from_args(args)
    worker_id = args.node_id or args.worker_id
    run_service(
        f"xmlrpc-filter-worker[{worker_id}]", lambda: serve(settings, worker_id, args.node_id)
    )


if __name__ == "__main__":
    main()
