"""What each node of a deployment served, counted locally and published to Redis."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from middlewares.addresses import node_host
from middlewares.cluster.client import connect
from middlewares.cluster.keys import Keys
from middlewares.cluster.presence import announce, withdraw
from middlewares.settings import Settings

log = logging.getLogger(__name__)


class NodeCounters:
    """Requests or tasks served by one node, published to a Redis hash.

    Counting is local; a thread flushes the total every ``flush_interval`` seconds, so
    the hot path pays no Redis round trip. Harnesses read all nodes with :meth:`read`.
    With ``host`` each flush also announces the node alive on that host
    (:mod:`middlewares.cluster.presence`), and closing withdraws it.
    With ``resume`` the count goes on from the node's published one: a node restarted
    under the same id then never makes a harness's before/after difference negative (at
    most the last ``flush_interval`` before a crash is not counted).
    """

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        service: str,
        node: str,
        flush_interval: float = 0.5,
        resume: bool = False,
        host: str | None = None,
    ) -> None:
        self._client = client
        self._key = Keys(namespace).counters(service)
        self._presence = Keys(namespace).presence(service)
        self._host = host
        self._node = node
        published = client.hget(self._key, node) if resume else None
        self._count = int(published) if published else 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._flush()  # announce the node now, not one interval later
        self._flusher = threading.Thread(
            target=self._flush_periodically, args=(flush_interval,), daemon=True
        )
        self._flusher.start()

    def increment(self, amount: int = 1) -> None:
        """Count ``amount`` more requests or tasks served by this node."""
        with self._lock:
            self._count += amount

    def _flush(self, leaving: bool = False) -> None:
        with self._lock:
            count = self._count
        pipe = self._client.pipeline(transaction=False)
        pipe.hset(self._key, self._node, count)
        if self._host is not None:
            if leaving:
                withdraw(pipe, self._presence, self._node)
            else:
                announce(pipe, self._presence, self._node, self._host)
        pipe.execute()

    def _flush_periodically(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            try:
                self._flush()
            except redis.RedisError as error:
                log.warning("could not publish node counters: %s", error)

    def close(self) -> None:
        """Stop the flusher, publish the final count and withdraw the node."""
        self._stopped.set()
        self._flusher.join(timeout=2)
        try:
            self._flush(leaving=True)
        except redis.RedisError as error:
            log.warning("could not publish the final node counter: %s", error)

    @staticmethod
    def read(client: redis.Redis, namespace: str, service: str) -> dict[str, int]:
        """Served counts of every node of ``service``, by node id."""
        raw = client.hgetall(Keys(namespace).counters(service))
        return {node.decode(): int(count) for node, count in raw.items()}


@contextmanager
def node_counter(settings: Settings, service: str, node: str) -> Iterator[NodeCounters]:
    """The counter of node ``node`` of ``service``, on a Redis connection of its own,
    resumed from its published count (a node the supervisor restarts keeps its id),
    announcing the node on its host; the final count is published, the node withdrawn
    and the connection closed on exit."""
    client = connect(settings)
    try:
        counters = NodeCounters(
            client, settings.namespace, service, node, resume=True, host=node_host(settings)
        )
        try:
            yield counters
        finally:
            counters.close()
    finally:
        client.close()


def read_node_counters(settings: Settings, service: str) -> dict[str, int]:
    """Requests or tasks served by each node of ``service``, by node id."""
    client = connect(settings, timeout=min(settings.timeout, 2.0))
    try:
        return NodeCounters.read(client, settings.namespace, service)
    finally:
        client.close()
