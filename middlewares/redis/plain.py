"""The at-most-once consumer of a Redis list, and the choice between it and the reliable
one by ``settings.guarantee``.

At most once (``--guarantee at-most-once``) a consumer takes messages with a plain BRPOP
(and an RPOP of up to ``prefetch - 1`` more, in the same round trip): they leave Redis
for good, with no processing list, no heartbeat key, no sweep of dead consumers and no
redelivery count. It answers them with the same Lua script as the reliable consumer, so
the answer, the result list, an InsultService store operation and the node's counter
still go together in one atomic step; only the guard that makes a re-delivered message
answered once is off, as nothing is ever re-delivered. What a consumer killed at any
moment loses is what it held: the messages popped and not answered yet (at most its
prefetch) and the answers of its last batch if the kill comes before they were written.
Nothing is ever answered twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import redis

from middlewares.addresses import node_host
from middlewares.cluster.keys import QueueKeys
from middlewares.cluster.presence import announce, withdraw
from middlewares.cluster.scripts import lua
from middlewares.redis.answers import Ack, Answers, Consumer
from middlewares.redis.transport import (
    HEARTBEAT_EVERY,
    HEARTBEAT_TTL,
    ReliableConsumer,
    block_seconds,
    prefetch_for,
)
from middlewares.settings import Settings

log = logging.getLogger(__name__)


class PlainConsumer:
    """One at-most-once consumer of a list: BRPOP, handle, answer.

    It keeps announcing itself (``keys.presence``, so live nodes can be listed), but
    holds nothing Redis could give back: a message popped is this process's alone.
    """

    def __init__(self, client: redis.Redis, answers: Answers, settings: Settings) -> None:
        self.consumer_id = answers.consumer_id
        self._redis = client
        self._keys = answers.keys
        self._host = node_host(settings)
        self._prefetch = prefetch_for(settings)
        self._block = block_seconds(settings)
        # Unguarded, the script never reads the processing key of ``answers``.
        self._answers = answers
        self._sha = ""
        self._next_beat = 0.0

    def start(self) -> None:
        """Load the acknowledgement script and announce the consumer alive."""
        self._sha = self._redis.script_load(lua("middlewares.redis", "ack"))
        pipe = self._redis.pipeline(transaction=False)
        self._announce(pipe)
        pipe.execute()

    def exchange(self, acks: Sequence[Ack]) -> list[bytes]:
        """Answer ``acks`` and pop the next messages, in one round trip: the answers, a
        BRPOP that waits up to a second for one message, and an RPOP of up to
        ``prefetch - 1`` more of those waiting."""
        pipe = self._redis.pipeline(transaction=False)
        self._answer(pipe, acks)
        if time.monotonic() >= self._next_beat:
            self._announce(pipe)
        pipe.brpop([self._keys.queue], self._block)
        if self._prefetch > 1:
            pipe.rpop(self._keys.queue, self._prefetch - 1)
        results = self._execute(pipe, acks)
        if self._prefetch > 1:
            popped, more = results[-2], results[-1]
        else:
            popped, more = results[-1], None
        # The RPOP may take messages that arrived just after BRPOP gave up.
        first = [] if popped is None else [popped[1]]
        return [*first, *(more or [])]

    def keep_alive(self) -> None:
        """Refresh the announcement if it is due; call it between long-running messages."""
        if time.monotonic() >= self._next_beat:
            pipe = self._redis.pipeline(transaction=False)
            self._announce(pipe)
            pipe.execute()

    def finish(self, acks: Sequence[Ack]) -> None:
        """Answer the last messages and leave."""
        pipe = self._redis.pipeline(transaction=False)
        self._answer(pipe, acks)
        withdraw(pipe, self._keys.presence, self.consumer_id)
        self._execute(pipe, acks)

    def _answer(self, pipe: redis.client.Pipeline, acks: Sequence[Ack]) -> None:
        if acks:
            pipe.evalsha(self._sha, *self._answers.command(acks, guarded=False))

    def _execute(self, pipe: redis.client.Pipeline, acks: Sequence[Ack]) -> list[Any]:
        """Run ``pipe``; when Redis had lost the script (SCRIPT FLUSH, a restart), load it
        again and answer ``acks`` once more: the messages popped by the same round trip
        are in its results all the same, so a lost script loses nothing."""
        results = pipe.execute(raise_on_error=False)
        if acks and isinstance(results[0], redis.exceptions.NoScriptError):
            log.warning("Redis lost the Lua scripts; loading them again")
            self._sha = self._redis.script_load(lua("middlewares.redis", "ack"))
            retry = self._redis.pipeline(transaction=False)
            self._answer(retry, acks)
            retry.execute()
            results = results[1:]
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    def _announce(self, pipe: redis.client.Pipeline) -> None:
        self._next_beat = time.monotonic() + HEARTBEAT_EVERY
        announce(pipe, self._keys.presence, self.consumer_id, self._host, HEARTBEAT_TTL)


def open_consumer(
    client: redis.Redis,
    keys: QueueKeys,
    consumer_id: str,
    settings: Settings,
    reply_ttl: int,
    log_key: str | None = None,
    log_length: int = 0,
    store_key: str | None = None,
) -> Consumer:
    """The consumer ``settings.guarantee`` asks for: a :class:`ReliableConsumer`
    (at-least-once) or a :class:`PlainConsumer` (at-most-once), answering to ``keys``'s
    reply area and, when given, the result list ``log_key`` and the store ``store_key``."""
    answers = Answers(
        keys.processing(consumer_id), keys, consumer_id, reply_ttl, log_key, log_length, store_key
    )
    kind = PlainConsumer if settings.guarantee == "at-most-once" else ReliableConsumer
    return kind(client, answers, settings)
