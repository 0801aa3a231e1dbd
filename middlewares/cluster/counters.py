"""What each node of a deployment served, counted locally and published to Redis."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from middlewares.cluster.client import connect
from middlewares.cluster.keys import Keys
from middlewares.settings import Settings

log = logging.getLogger(__name__)


class NodeCounters:
    """Requests or tasks served by one node, published to a Redis hash.

    Counting is local; a thread flushes the total every ``flush_interval`` seconds, so
    the hot path pays no Redis round trip. Harnesses read all nodes with :meth:`read`.
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
    ) -> None:
        self._client = client
        self._key = Keys(namespace).counters(service)
        self._node = node
        published = client.hget(self._key, node) if resume else None
        self._count = int(published) if published else 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_periodically, args=(flush_interval,), daemon=True
        )
        self._flusher.start()

    def increment(self, amount: int = 1) -> None:
        """Count ``amount`` more requests or tasks served by this node."""
        with self._lock:
            self._count += amount

    def _flush(self) -> None:
        with self._lock:
            count = self._count
        self._client.hset(self._key, self._node, count)

    def _flush_periodically(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            try:
                self._flush()
            except redis.RedisError as error:
                log.warning("could not publish node counters: %s", error)

    def close(self) -> None:
        """Stop the flusher and publish the final count."""
        self._stopped.set()
        self._flusher.join(timeout=2)
        try:
            self._flush()
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
    resumed from its published count (a node the supervisor restarts keeps its id);
    the final count is published and the connection closed on exit."""
    client = connect(settings)
    try:
        counters = NodeCounters(client, settings.namespace, service, node, resume=True)
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
