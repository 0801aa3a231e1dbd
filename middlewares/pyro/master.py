"""The n-node InsultService master: ``python -m middlewares.pyro.master``.

One :class:`Master` object, registered as ``<ns>.insult.master``, keeps the registry of
live nodes (:class:`~middlewares.direct.NodeDirectory`): nodes register their URI and
heartbeat every second, and one silent for three heartbeats is dropped. Clients ask it
``nodes()`` and then call the nodes directly, round-robin; the master carries no
InsultService request itself. Its state is soft: were it restarted, every node's next
heartbeat would be refused and the node would register again.
"""

from __future__ import annotations

import Pyro4

from middlewares.direct import MISSED_HEARTBEATS, NODE_HEARTBEAT, NodeDirectory
from middlewares.pyro._common import (
    INSULT_MASTER,
    build_parser,
    direct_uri,
    publish,
    run_service,
)
from middlewares.runtime import StopSignal
from middlewares.settings import Settings, from_args


@Pyro4.expose
class Master:
    """The remote object: the node protocol, and ``nodes()`` for clients."""

    def __init__(self, directory: NodeDirectory) -> None:
        self._directory = directory

    def register(self, node_id: object, address: object) -> float:
        """A node starts at ``address`` (its ``PYRO:`` URI); returns the heartbeat interval."""
        return self._directory.register(node_id, address)

    def heartbeat(self, node_id: object) -> bool:
        """A node lives; False when the master does not know it: it must register again."""
        return self._directory.heartbeat(node_id)

    def deregister(self, node_id: object) -> bool:
        """A node stops gracefully; False if it was not registered."""
        return self._directory.deregister(node_id)

    def nodes(self) -> list[str]:
        """The URIs of the live nodes, in an order rotated on every call."""
        return self._directory.nodes()


def serve(settings: Settings, expected_nodes: int) -> None:
    """Publish the master until SIGINT or SIGTERM, then let the nodes deregister."""
    stop = StopSignal()
    directory = NodeDirectory(lambda value: direct_uri(value, "node address"), expected_nodes)
    with publish(settings, {INSULT_MASTER: Master(directory)}):
        stop.wait()
        # The launcher stops the nodes at the same time; their deregistrations (or, for
        # a dead one, its expiry) come within this.
        directory.wait_until_empty(NODE_HEARTBEAT * MISSED_HEARTBEATS)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.pyro.master``."""
    parser = build_parser(
        "middlewares.pyro.master",
        "Keep the registry of live InsultService nodes as <namespace>.insult.master in a "
        "Pyro4 name server. Usually started by `python -m middlewares serve pyro insult "
        "--nodes N`.",
    )
    parser.add_argument(
        "--expect-nodes",
        type=int,
        default=0,
        metavar="N",
        help="list no node to clients until N have registered (at most 15 s), so a "
        "starting deployment is ready with all its nodes (default: 0, no wait)",
    )
    args = parser.parse_args(argv)
    settings = from_args(args)
    run_service("pyro-insult-master", lambda: serve(settings, args.expect_nodes))


if __name__ == "__main__":
    main()
