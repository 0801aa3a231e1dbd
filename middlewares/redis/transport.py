"""Redis as a transport: the reliable queue every Redis service process reads.

The InsultService, the InsultFilter workers and the echo baseline all consume a list the
same way, so that is written once here (:class:`ReliableConsumer`): a consumer moves a
message from the shared list into a processing list of its own, handles it, and then in
one Lua script removes it from the processing list *and* pushes its answers. A consumer
killed at any moment therefore loses nothing: what it held is still in its processing
list, and is put back on the shared list by the same consumer when it restarts, or by any
live consumer once the dead one's heartbeat key has expired. Because the answer is only
written by the script that removes the message, a message handed out twice (after a
consumer was wrongly thought dead) is still answered exactly once. The same script adds
the number of messages it acknowledged to the consumer's field of the per-node counters
(:meth:`middlewares.cluster.keys.Keys.counters`), so those counts are exact too. The
scripts are in ``lua/``.

Every message goes through :func:`~middlewares.messages.handle_message`, so no message
can crash its consumer. As defence in depth, each queue has a delivery limit: a message
re-queued from a dying consumer ``settings.delivery_limit`` times is set aside on the
queue's dead-letter list (:attr:`~middlewares.cluster.keys.QueueKeys.dead`) instead of
being handed out again, and such a suspect is always handled alone. Answers go only to
reply lists of the namespace's reply area (:meth:`~middlewares.cluster.keys.Keys.is_reply_key`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from middlewares.addresses import node_host
from middlewares.cluster.keys import Keys
from middlewares.cluster.presence import announce, withdraw
from middlewares.cluster.scripts import lua
from middlewares.core import InsultError
from middlewares.messages import bad_messages, handle_message
from middlewares.redis.answers import Ack, Answers, Consumer
from middlewares.runtime import StopSignal
from middlewares.service import error_reply
from middlewares.settings import Settings

log = logging.getLogger(__name__)

#: BLMOVE and LMOVE appeared in Redis 6.2.
MIN_REDIS_VERSION = (6, 2)

#: Most messages a consumer claims in one round trip when requests carry no simulated work.
PREFETCH = 16

#: A consumer refreshes its heartbeat this often, and is presumed dead this long after.
HEARTBEAT_EVERY = 1.0
HEARTBEAT_TTL = 5.0

#: How often a consumer looks for dead consumers whose messages must be re-queued.
SWEEP_EVERY = 2.0


def block_seconds(settings: Settings) -> float:
    """How long one blocking pop may wait: well under the socket timeout, and short
    enough that a process notices a stop request within a second."""
    return min(1.0, settings.timeout / 2)


def prefetch_for(settings: Settings) -> int:
    """How many messages a consumer claims at once.

    Cheap requests are batched to save round trips; requests with simulated work are
    taken one at a time, so that competing consumers share the load evenly.
    """
    return 1 if settings.work_ms > 0 else PREFETCH


def reply_ttl(settings: Settings) -> int:
    """Seconds a request/reply list lives after its last reply: far past any client's
    wait, short enough that replies nobody collects do not pile up."""
    return max(60, int(3 * settings.timeout))


def reply_address(message: dict[str, Any], keys: Keys, required: bool = True) -> str | None:
    """The message's ``reply_to``, checked: a key of the namespace's reply area.

    None when it has none and none is ``required``; otherwise raises
    :class:`~middlewares.core.InsultError`, and :func:`refusal` drops the message.
    """
    reply_to = message.get("reply_to")
    if reply_to is None and not required:
        return None
    if not keys.is_reply_key(reply_to):
        raise InsultError(
            f"reply_to must name a reply list {keys.namespace}:<service>:replies:<id>, "
            f"got {_clip(reply_to)}"
        )
    return reply_to


def refusal(raw: bytes, message: dict[str, Any] | None, error: str, keys: Keys) -> Ack:
    """The acknowledgement of a refused message: ``error`` answered on its ``reply_to``
    if that is in the reply area, else the message is dropped and logged (bounded)."""
    reply_to = None if message is None else message.get("reply_to")
    if message is not None and keys.is_reply_key(reply_to):
        return Ack(raw, reply_to, error_reply(error, id=message.get("id")))
    request_id = None if message is None else _clip(message.get("id"))
    bad_messages.warning("dropped a message that cannot be answered (id %s): %s", request_id, error)
    return Ack(raw)


def _clip(value: object) -> str:
    """A value for a log line or an error: its repr, at most 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


class ReliableConsumer:
    """One consumer of a reliable list queue: claim, handle, then acknowledge atomically.

    Messages are moved from ``keys.queue`` into ``keys.processing(consumer_id)`` and only
    leave it in the Lua script that writes their answers. A consumer restarted with the
    same id first re-queues its own processing list; every consumer also re-queues the
    processing lists of consumers whose heartbeat expired.
    """

    def __init__(self, client: redis.Redis, answers: Answers, settings: Settings) -> None:
        self.consumer_id = answers.consumer_id
        self._redis = client
        self._keys = answers.keys
        self._processing = answers.processing
        self._heartbeat = answers.keys.heartbeat(answers.consumer_id)
        self._host = node_host(settings)
        self._delivery_limit = settings.delivery_limit
        self._prefetch = prefetch_for(settings)
        self._block = block_seconds(settings)
        self._answers = answers
        self._shas: dict[str, str] = {}
        self._next_beat = 0.0
        self._next_sweep = 0.0

    def start(self, crashed: bool = True) -> None:
        """Load the scripts, re-queue what an earlier life of this consumer held, and
        announce it alive.

        What an earlier life held counts towards the delivery limit (it died holding
        it), unless ``crashed`` is False: this life is only reloading the scripts.
        """
        self._load_scripts()
        pipe = self._redis.pipeline(transaction=False)
        self._requeue(pipe, self.consumer_id, force=True, count=crashed)
        self._beat(pipe)
        self._report(pipe.execute()[0], f"an earlier {self.consumer_id}")

    def exchange(self, acks: Sequence[Ack]) -> list[bytes]:
        """Acknowledge ``acks`` and claim the next messages, waiting up to a second.

        One round trip: the acknowledgements, the heartbeat, a BLMOVE that waits for one
        message, and a script that claims up to ``prefetch - 1`` more of those waiting.
        """
        if time.monotonic() >= self._next_sweep:
            self._sweep()
        results = self._run(lambda pipe: self._claim(pipe, acks))
        if results is None:
            return []
        # The script may claim a message that arrived just after BLMOVE gave up.
        first = [] if results[-2] is None else [results[-2]]
        return [*first, *results[-1]]

    def keep_alive(self) -> None:
        """Refresh the heartbeat if it is due; call it between long-running messages."""
        if time.monotonic() >= self._next_beat:
            pipe = self._redis.pipeline(transaction=False)
            self._beat(pipe)
            pipe.execute()

    def finish(self, acks: Sequence[Ack]) -> None:
        """Acknowledge the last messages and leave: nothing held, no heartbeat."""

        def leave(pipe: redis.client.Pipeline) -> None:
            self._ack(pipe, acks)
            self._requeue(pipe, self.consumer_id, force=True, count=False)
            pipe.delete(self._heartbeat)
            withdraw(pipe, self._keys.presence, self.consumer_id)

        if self._run(leave) is None:
            self._run(leave)

    def _claim(self, pipe: redis.client.Pipeline, acks: Sequence[Ack]) -> None:
        self._ack(pipe, acks)
        if time.monotonic() >= self._next_beat:
            self._beat(pipe)
        queue, processing = self._keys.queue, self._processing
        pipe.blmove(queue, processing, self._block, "RIGHT", "LEFT")
        pipe.evalsha(
            self._shas["claim"], 3, queue, processing, self._keys.redeliveries, self._prefetch - 1
        )

    def _run(self, build: Callable[[redis.client.Pipeline], None]) -> list[Any] | None:
        """Execute one pipeline and return its results, or None if Redis had lost the Lua
        scripts (SCRIPT FLUSH, a restart).

        Scripts run by SHA to save bandwidth. When they are gone, nothing of the failed
        scripts happened but a BLMOVE may have, so the scripts are loaded again and the
        whole processing list goes back on the queue: the messages being acknowledged
        are handled again (their answers are still written once, guarded by LREM).
        """
        pipe = self._redis.pipeline(transaction=False)
        build(pipe)
        try:
            return pipe.execute()
        except redis.exceptions.NoScriptError:
            log.warning("Redis lost the Lua scripts; loading them again")
            self.start(crashed=False)
            return None

    def _load_scripts(self) -> None:
        names = ("ack", "claim", "requeue")
        self._shas = {name: self._redis.script_load(lua(__package__, name)) for name in names}

    def _ack(self, pipe: redis.client.Pipeline, acks: Sequence[Ack]) -> None:
        if acks:
            pipe.evalsha(self._shas["ack"], *self._answers.command(acks, guarded=True))

    def _beat(self, pipe: redis.client.Pipeline) -> None:
        self._next_beat = time.monotonic() + HEARTBEAT_EVERY
        pipe.set(self._heartbeat, "alive", px=int(HEARTBEAT_TTL * 1000))
        pipe.sadd(self._keys.consumers, self.consumer_id)
        announce(pipe, self._keys.presence, self.consumer_id, self._host, HEARTBEAT_TTL)

    def _requeue(
        self, pipe: redis.client.Pipeline, consumer_id: str, force: bool, count: bool
    ) -> None:
        """Re-queue what ``consumer_id`` holds (if it is dead, or with ``force``); with
        ``count``, it died holding it, which counts towards the delivery limit."""
        keys = self._keys
        pipe.evalsha(
            self._shas["requeue"],
            6,
            keys.processing(consumer_id),
            keys.queue,
            keys.heartbeat(consumer_id),
            keys.consumers,
            keys.redeliveries,
            keys.dead,
            consumer_id,
            "1" if force else "0",
            self._delivery_limit if count else 0,
        )

    def _report(self, outcome: list[int], holder: str) -> None:
        """Log what one re-queue script did with the messages ``holder`` held."""
        requeued, dead = outcome
        if requeued > 0:
            log.warning("re-queued %d message(s) held by %s", requeued, holder)
        if dead > 0:
            log.error(
                "set aside %d message(s) held by %s on %s: they were re-queued from a dying "
                "consumer %d times",
                dead,
                holder,
                self._keys.dead,
                self._delivery_limit,
            )

    def _sweep(self) -> None:
        """Re-queue what consumers whose heartbeat expired were holding."""
        self._next_sweep = time.monotonic() + SWEEP_EVERY
        others = [
            member.decode()
            for member in self._redis.smembers(self._keys.consumers)
            if member.decode() != self.consumer_id
        ]
        if not others:
            return
        pipe = self._redis.pipeline(transaction=False)
        for other in others:
            self._requeue(pipe, other, force=False, count=True)
        for other, outcome in zip(others, pipe.execute(), strict=True):
            self._report(outcome, f"consumer {other}, which is gone")


Handler = Callable[[list[bytes]], list[Ack]]

#: Builds the acknowledgement answering one decoded message (raw bytes, JSON object).
Answer = Callable[[bytes, dict[str, Any]], Ack]


def each_message(
    settings: Settings, answer: Answer, between: Callable[[], None] | None = None
) -> Handler:
    """A handler that runs every claimed message through the one per-message step
    (:func:`~middlewares.messages.handle_message`): ``answer`` acknowledges it, and
    anything it raises becomes a :func:`refusal`. ``between`` runs after each message
    (a heartbeat during long batches)."""
    keys = Keys(settings.namespace)
    limits = settings.limits

    def refuse(raw: bytes, message: dict[str, Any] | None, error: str) -> Ack:
        return refusal(raw, message, error, keys)

    def handle(messages: list[bytes]) -> list[Ack]:
        acks = []
        for raw in messages:
            acks.append(handle_message(raw, limits, answer, refuse))
            if between is not None:
                between()
        return acks

    return handle


def consume(consumer: Consumer, handle: Handler, stop: StopSignal) -> None:
    """Claim, handle and acknowledge until ``stop``; then acknowledge what is held and leave."""
    consumer.start()
    acks: list[Ack] = []
    while not stop.is_set():
        acks = handle(consumer.exchange(acks))
    consumer.finish(acks)


def encode(message: dict[str, Any]) -> bytes:
    """A JSON message as UTF-8 bytes (non-ASCII kept readable for redis-cli users)."""
    return json.dumps(message, ensure_ascii=False).encode("utf-8")
