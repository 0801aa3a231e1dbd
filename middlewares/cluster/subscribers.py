"""The subscribers of a direct middleware's n-node InsultService, shared by every node."""

from __future__ import annotations

from collections.abc import Hashable

import redis

from middlewares.cluster.keys import Keys
from middlewares.cluster.scripts import lua


class RedisSubscriberRegistry:
    """The subscribers of every node of a deployment, in the Redis hash
    ``<ns>:insults:subscribers`` (address -> consecutive failed broadcasts).

    A :class:`~middlewares.broadcast.SubscriberRegistry`: a subscriber added through any
    node is notified by whichever node holds the broadcast lease, and its failure count
    survives a change of broadcaster. Counting is one script, so an address removed
    meanwhile never comes back. Addresses are strings.
    """

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self._client = client
        self._key = Keys(namespace).subscribers
        self._record = client.register_script(lua(__package__, "subscriber_record"))

    def add(self, address: Hashable) -> bool:
        """Subscribe ``address``; False if it already was."""
        return bool(self._client.hsetnx(self._key, str(address), 0))

    def remove(self, address: Hashable) -> bool:
        """Unsubscribe ``address``; False if it was not subscribed."""
        return bool(self._client.hdel(self._key, str(address)))

    def addresses(self) -> list[Hashable]:
        """The current subscribers."""
        return [address.decode() for address in self._client.hkeys(self._key)]

    def record(self, address: Hashable, failed: bool, max_failures: int) -> bool:
        """Count one delivery; True when the subscriber was dropped now."""
        args = [str(address), int(failed), max_failures]
        return bool(self._record(keys=[self._key], args=args))
