"""Which nodes of a deployment are alive, and on which host: what a study that measures
nodes started elsewhere waits for, and records.

Every node of the n-node form, whatever its middleware, announces itself in Redis,
where it keeps its shared state anyway: its id in the set ``<ns>:nodes:<service>`` and
its host in ``<ns>:nodes:<service>:<id>``, a key with a short expiry that the node
renews with its counters (or, on Redis, its heartbeat). A node that stops withdraws at
once; a killed one drops out when its key expires. The host is the node's own word for
it (:func:`middlewares.addresses.node_host`), so it is what the machines call each other.
"""

from __future__ import annotations

import redis

from middlewares.cluster.client import connect, redis_errors_as_unavailable
from middlewares.cluster.keys import Keys
from middlewares.contract import LiveNode
from middlewares.settings import Settings

#: Seconds a node's announcement lasts unless renewed.
PRESENCE_TTL = 3.0


def node_key(presence: str, node: str) -> str:
    """The key holding the host of ``node``, below the set ``presence``."""
    return f"{presence}:{node}"


def announce(
    pipe: redis.client.Pipeline, presence: str, node: str, host: str, ttl: float = PRESENCE_TTL
) -> None:
    """Queue on ``pipe`` the commands saying ``node`` lives on ``host`` for ``ttl`` s."""
    pipe.sadd(presence, node)
    pipe.set(node_key(presence, node), host, px=int(ttl * 1000))


def withdraw(pipe: redis.client.Pipeline, presence: str, node: str) -> None:
    """Queue on ``pipe`` the commands saying ``node`` has left."""
    pipe.srem(presence, node)
    pipe.delete(node_key(presence, node))


def read_live_nodes(settings: Settings, service: str) -> list[LiveNode]:
    """The live nodes of ``service`` in ``settings.namespace``, by id; raises
    :class:`~middlewares.contract.BrokerUnavailable` when Redis does not answer."""
    presence = Keys(settings.namespace).presence(service)
    client = connect(settings, timeout=min(settings.timeout, 2.0))
    try:
        with redis_errors_as_unavailable(settings):
            nodes = sorted(member.decode() for member in client.smembers(presence))
            if not nodes:
                return []
            hosts = client.mget([node_key(presence, node) for node in nodes])
    finally:
        client.close()
    return [
        LiveNode(node, host.decode())
        for node, host in zip(nodes, hosts, strict=True)
        if host is not None
    ]
