"""What turns a RabbitMQ service process into a node of the n-node form.

Private to the package. A node is the same process as in the one-node form, started
with ``--node-id``: it consumes the same queue as its peers (the broker spreads the
messages over them), keeps its shared state in Redis through :mod:`middlewares.cluster`
and counts what it serves in :class:`middlewares.cluster.NodeCounters`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from middlewares.cluster import NodeCounters, redis_client
from middlewares.runtime import parse_node_id
from middlewares.settings import Settings


def add_node_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--node-id``: without it the process runs the one-node form, as before."""
    parser.add_argument(
        "--node-id",
        type=parse_node_id,
        metavar="ID",
        help="run as node ID of the n-node form (shared state and per-node counters in "
        "Redis; start it with `python -m middlewares serve rabbitmq <service> --nodes N` "
        "or `python -m middlewares join rabbitmq <service>`); default: the one-node form",
    )


@dataclass(frozen=True)
class Node:
    """A running node: its id, its Redis connection and its served counter."""

    id: str
    redis: redis.Redis
    counters: NodeCounters


@contextmanager
def node_membership(settings: Settings, service: str, node_id: str) -> Iterator[Node]:
    """Membership of ``node_id`` in the ``service`` ("insult" or "filter") deployment.

    Raises :class:`middlewares.contract.BrokerUnavailable` when Redis does not answer.
    On exit the final count is published and the Redis connection closed.
    """
    client = redis_client(settings)
    try:
        # The supervisor restarts a crashed node under the same id: it goes on counting
        # from its published count, so counts never go backwards.
        counters = NodeCounters(client, settings.namespace, service, node_id, resume=True)
        try:
            yield Node(node_id, client, counters)
        finally:
            counters.close()
    finally:
        client.close()
