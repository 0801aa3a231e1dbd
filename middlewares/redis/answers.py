"""What a Redis consumer writes for the messages it handled: one :class:`Ack` per
message, applied by the acknowledgement script ``lua/ack.lua`` with :class:`Answers`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from middlewares.cluster.keys import QueueKeys


@dataclass(frozen=True)
class Ack:
    """The outcome of one claimed message, applied atomically by :class:`ReliableConsumer`.

    Attributes:
        raw: The message exactly as it was claimed.
        reply_to: List to push the reply on (its TTL is refreshed), or None.
        reply: The answer for the submitter; with a ``store_op``, only its beginning.
        log_entry: Pushed on the consumer's log list (the filter's results), if not empty.
        store_op: An InsultService operation (``add_insult``, ``get_insults``,
            ``random_insult``) on the consumer's store set, run in the same atomic step;
            its result, as JSON, and ``}`` end the reply.
        store_arg: The operation's argument (the canonical insult to add).
    """

    raw: bytes
    reply_to: str | None = None
    reply: bytes = b""
    log_entry: bytes = b""
    store_op: str = ""
    store_arg: str = ""


@dataclass(frozen=True)
class Answers:
    """The arguments of the acknowledgement script (``lua/ack.lua``) for a consumer:
    where its answers go. ``guarded`` (at-least-once) acknowledges only messages still
    in ``processing``; unguarded (at-most-once) the messages were popped for good."""

    processing: str
    keys: QueueKeys
    consumer_id: str
    reply_ttl: int
    log_key: str | None = None
    log_length: int = 0
    store_key: str | None = None

    def command(self, acks: Sequence[Ack], guarded: bool) -> list[bytes | str | int]:
        """The number of keys, the keys and the arguments of one EVALSHA of the script."""
        keys = [self.processing, self.keys.counters, self.keys.redeliveries]
        index: dict[str, int] = {}

        def key_index(key: str | None) -> int:
            if key is None:
                return 0
            if key not in index:
                keys.append(key)
                index[key] = len(keys)
            return index[key]

        args: list[bytes | str | int] = [
            self.reply_ttl,
            self.log_length,
            self.consumer_id,
            "1" if guarded else "0",
        ]
        for ack in acks:
            log_key = self.log_key if ack.log_entry else None
            store_key = self.store_key if ack.store_op else None
            args += [ack.raw, key_index(ack.reply_to), ack.reply, key_index(log_key)]
            args += [ack.log_entry, key_index(store_key), ack.store_op, ack.store_arg]
        return [len(keys), *keys, *args]


class Consumer(Protocol):
    """What :func:`~middlewares.redis.transport.consume` drives: either guarantee."""

    consumer_id: str

    def start(self) -> None:
        """Get ready to claim; announce the consumer alive."""
        ...

    def exchange(self, acks: Sequence[Ack]) -> list[bytes]:
        """Acknowledge ``acks`` and claim the next messages, waiting up to a second."""
        ...

    def keep_alive(self) -> None:
        """Refresh whatever says the consumer lives, if due."""
        ...

    def finish(self, acks: Sequence[Ack]) -> None:
        """Acknowledge the last messages and leave."""
        ...
