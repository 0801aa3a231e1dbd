"""The insult set in Redis, shared by every node of a deployment."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import redis

from middlewares.cluster.client import connect
from middlewares.cluster.keys import Keys
from middlewares.contract import BrokerUnavailable, StoreUnavailable
from middlewares.core import DEFAULT_LIMITS, Limits, canonical_insult
from middlewares.settings import Settings

log = logging.getLogger(__name__)


class RedisInsultStore:
    """The insult set ``<ns>:insults:store``; implements :class:`middlewares.service.InsultOps`.

    A failing Redis raises :class:`~middlewares.contract.StoreUnavailable`, which every
    transport answers as "retry later" rather than as a bug of the call.
    """

    def __init__(
        self, client: redis.Redis, namespace: str, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self._client = client
        self._key = Keys(namespace).store
        self._limits = limits

    def add(self, insult: str) -> bool:
        """Add an insult; True only for the one caller, of all nodes, that added it."""
        canonical = canonical_insult(insult, self._limits)
        with _store_errors():
            return bool(self._client.sadd(self._key, canonical))

    def add_all(self, insults: Iterable[str]) -> None:
        """Add many insults in one round trip (the defaults at start)."""
        canonical = [canonical_insult(insult, self._limits) for insult in insults]
        if canonical:
            with _store_errors():
                self._client.sadd(self._key, *canonical)

    def all(self) -> list[str]:
        """Every stored insult, sorted (a Redis set has no order)."""
        with _store_errors():
            members = self._client.smembers(self._key)
        return sorted(member.decode() for member in members)

    def random(self) -> str:
        """A random stored insult, or "" when the set is empty."""
        with _store_errors():
            member = self._client.srandmember(self._key)
        return member.decode() if member else ""


@contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except redis.RedisError as error:
        raise StoreUnavailable(f"the shared insult store (Redis) failed: {error}; retry") from None


def delete_shared_state(settings: Settings, service: str | None = None) -> list[str]:
    """Delete the n-node form's keys of ``settings.namespace`` (:meth:`Keys.shared_state`,
    of ``service`` only if given); returns what was removed, in words. Does nothing when
    Redis does not answer (then there is nothing to clean either)."""
    try:
        client = connect(settings, timeout=min(settings.timeout, 2.0))
    except BrokerUnavailable:
        return []
    keys = Keys(settings.namespace).shared_state(service)
    try:
        removed = int(client.delete(*keys)) if keys else 0
    except redis.RedisError as error:
        log.warning("could not delete the shared state of %s: %s", settings.namespace, error)
        return []
    finally:
        client.close()
    return [f"{removed} Redis keys of the n-node form"] if removed else []
