"""A filter worker process: ``python -m middlewares.pyro.filter_worker --worker-id ID``.

The worker pulls leased batches of tasks from the front (``<ns>.insult.filter``) with a
long-poll, censors them and hands the results back with its next pull; the process body
is :func:`~middlewares.workqueue.serve_worker`, shared with the XML-RPC form. Here it
gets its two Pyro4 connections to the front (pulls, heartbeats) and its insult list:
``get_insults`` of the InsultService of the namespace (either form, through
:class:`~middlewares.pyro.clients.PyroInsultClient`), re-read at most every
``insult_refresh`` seconds; the default list when no InsultService is registered.

Killed, the worker stops heartbeating and its restart re-registers under the same id;
either way the front re-queues what it held. On SIGTERM it finishes the batch it holds,
hands the results in, leaves and exits 0.

Started with ``--node-id ID`` instead, it is one node of the n-node form: the same
worker, with the node id as its worker id, counting the tasks it hands in under
``<ns>:stats:filter`` in Redis.
"""

from __future__ import annotations

from middlewares.pyro._common import (
    INSULT_FILTER,
    NotRegistered,
    Remote,
    build_parser,
    object_name,
    run_service,
    serve_hint,
)
from middlewares.pyro.clients import PyroInsultClient
from middlewares.settings import Settings, from_args
from middlewares.workqueue import InsultListReader, add_worker_identity, serve_worker


def serve(settings: Settings, worker_id: str, node: str | None = None) -> None:
    """Run one worker until SIGINT or SIGTERM; ``node`` makes it a node of the n-node form."""
    front_name = object_name(settings, INSULT_FILTER)
    serve_worker(
        settings,
        worker_id,
        node,
        connect_front=lambda: Remote(settings, front_name, serve_hint("filter")),
        insults=InsultListReader(settings, PyroInsultClient, absent=NotRegistered),
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.pyro.filter_worker``."""
    parser = build_parser(
        "middlewares.pyro.filter_worker",
        "Censor texts pulled from the InsultFilter front <namespace>.insult.filter. "
        "Usually started by `python -m middlewares serve pyro filter --workers N` "
        "(or --nodes N).",
    )
    add_worker_identity(parser)
    args = parser.parse_args(argv)
    settings = from_args(args)
    worker_id = args.node_id or args.worker_id
    run_service(
        f"pyro-filter-worker {worker_id}", lambda: serve(settings, worker_id, args.node_id)
    )


if __name__ == "__main__":
    main()
