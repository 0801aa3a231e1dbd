"""The master of the n-node InsultService: ``python -m middlewares.xmlrpc.master``.

It listens where the one-node InsultService would (``http://<host>:<insult-port>/<ns>/insult``)
and serves the node directory (:class:`middlewares.direct.NodeDirectory`). Nodes
(``middlewares.xmlrpc.insult_service --node-id ID``) listen on ports of their own, register
their URL here and heartbeat every second; one silent for three heartbeats is dropped,
one that stops gracefully deregisters at once. Clients ask ``nodes()`` for the live URLs
and call the nodes directly: the master carries no InsultService request, so it is never
the bottleneck, and clients keep working with the nodes they know while it is away.
"""

from __future__ import annotations

import xmlrpc.client
from collections.abc import Callable
from typing import Any

from middlewares.direct import MISSED_HEARTBEATS, NODE_HEARTBEAT, NodeDirectory
from middlewares.runtime import StopSignal
from middlewares.settings import Settings, from_args
from middlewares.workqueue import STARTUP_GRACE
from middlewares.xmlrpc._common import (
    METHOD_NOT_FOUND,
    build_parser,
    check_http_url,
    count_argument,
    run_service,
    serving,
)

#: The InsultService's own methods, which only nodes serve.
_NODE_METHODS = ("add_insult", "get_insults", "random_insult", "subscribe", "unsubscribe")


def master_methods(directory: NodeDirectory) -> dict[str, Callable[..., Any]]:
    """The master's XML-RPC methods: the directory's, and a clear refusal of the
    InsultService methods for a client that called the master as a one-node service."""
    methods: dict[str, Callable[..., Any]] = {
        "nodes": directory.nodes,
        "register": directory.register,
        "heartbeat": directory.heartbeat,
        "deregister": directory.deregister,
    }
    for name in _NODE_METHODS:
        methods[name] = _served_by_nodes(name)
    return methods


def _served_by_nodes(name: str) -> Callable[..., Any]:
    def refuse(*args: object) -> Any:
        raise xmlrpc.client.Fault(
            METHOD_NOT_FOUND,
            f"{name} is served by the nodes of this n-node InsultService, not by its "
            "master: call nodes() here for their URLs, then call one of them",
        )

    return refuse


def serve(settings: Settings, expected_nodes: int) -> None:
    """Serve the node directory until SIGINT or SIGTERM."""
    stop = StopSignal()
    directory = NodeDirectory(lambda url: check_http_url(url, "node url"), expected_nodes)
    with serving(settings, "insult", master_methods(directory)):
        stop.wait()
        # The launcher stops the nodes at the same time: stay while they deregister
        # (or, for a dead one, expire), so none is left heartbeating into the void.
        directory.wait_until_empty(NODE_HEARTBEAT * MISSED_HEARTBEATS)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.xmlrpc.master``."""
    parser = build_parser(
        "middlewares.xmlrpc.master",
        "Keep the directory of the nodes of an n-node InsultService at "
        "http://HOST:INSULT_PORT/NAMESPACE/insult. Usually started by "
        "`python -m middlewares serve xmlrpc insult --nodes N`.",
    )
    parser.add_argument(
        "--expect-nodes",
        type=count_argument,
        default=0,
        metavar="N",
        help="list no node to clients until N have registered (or "
        f"{STARTUP_GRACE:g} s passed), so the load spreads from the first request "
        "(default: 0, list them as they come)",
    )
    args = parser.parse_args(argv)
    settings = from_args(args)
    run_service("xmlrpc-insult-master", lambda: serve(settings, args.expect_nodes))


if __name__ == "__main__":
    main()
