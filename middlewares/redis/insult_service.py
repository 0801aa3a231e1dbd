"""The InsultService process on Redis: ``python -m middlewares.redis.insult_service``.

It answers JSON requests from ``<ns>:insults:requests`` on each request's ``reply_to``
list, keeps the insults in the Redis set ``<ns>:insults:store`` and, while it holds the
broadcaster lease, publishes a random insult on ``<ns>:insults:broadcast`` every
``broadcast_interval`` seconds. All state is in Redis, so any number of these processes
can serve one namespace as competing consumers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import redis

from middlewares.core import InsultError, load_default_insults
from middlewares.redis.transport import (
    Ack,
    Keys,
    ReliableConsumer,
    connect,
    consume,
    parse_request,
    reply_ttl,
    run_process,
)
from middlewares.runtime import StopSignal
from middlewares.service import Broadcaster, dispatch_insult_request, error_reply
from middlewares.settings import Settings, simulate_work

log = logging.getLogger(__name__)


class RedisInsultStore:
    """The insult set in Redis, as the service itself uses it outside requests: to load
    the defaults and to pick the insult to broadcast."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._redis = client
        self._key = key

    def add_many(self, insults: list[str]) -> int:
        """Add canonical insults in one round trip; returns how many were new."""
        return self._redis.sadd(self._key, *insults) if insults else 0

    def random(self) -> str:
        """A random insult, or "" when the set is empty."""
        member = self._redis.srandmember(self._key)
        return "" if member is None else member.decode()


@dataclass(frozen=True)
class StoreOp:
    """A request's operation on the insult set, run by the script that sends its reply."""

    name: str
    argument: str = ""


class _StorePlanner:
    """The store :func:`dispatch_insult_request` works on: it validates a request and
    picks the operation, and this records which one, instead of running it, so that the
    operation runs inside the atomic step that acknowledges the request and replies
    (see ``transport._ACK``). That saves a round trip per request and makes each
    request's effect happen exactly once, even when a request is re-delivered."""

    def add(self, insult: str) -> Any:
        """SADD of the canonical insult; replies whether it was new."""
        return StoreOp("add", insult)

    def all(self) -> Any:
        """SMEMBERS, sorted."""
        return StoreOp("all")

    def random(self) -> Any:
        """SRANDMEMBER, or ""."""
        return StoreOp("random")


# KEYS: the lease. ARGV: owner, TTL in ms. Renew our own lease, or take a free one.
_HOLD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

# KEYS: the lease. ARGV: owner. Give the lease up only if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class BroadcastLease:
    """Decides which InsultService process broadcasts: the holder of a Redis lease.

    The holder renews it on every tick; if it dies, the lease expires after
    ``ttl`` seconds and the next process to tick takes it. So however many processes
    serve a namespace, one broadcast goes out per interval.
    """

    def __init__(self, client: redis.Redis, key: str, owner: str, ttl: float) -> None:
        self._key = key
        self._owner = owner
        self._ttl_ms = int(ttl * 1000)
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)

    def hold(self) -> bool:
        """Renew or take the lease; True if this process is the broadcaster now."""
        return self._hold(keys=[self._key], args=[self._owner, self._ttl_ms]) == 1

    def release(self) -> None:
        """Let another process take over at once instead of after the TTL."""
        self._release(keys=[self._key], args=[self._owner])


class _InsultHandler:
    """Turns claimed requests into acknowledgements carrying their replies."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._planner = _StorePlanner()

    def __call__(self, messages: list[bytes]) -> list[Ack]:
        return [self._answer(raw) for raw in messages]

    def _answer(self, raw: bytes) -> Ack:
        request = parse_request(raw)
        if request is None:
            return Ack(raw)
        message, reply_to = request
        request_id = message.get("id")
        simulate_work(self._settings)
        try:
            op = dispatch_insult_request(
                self._planner, message.get("op"), message.get("args", []), self._settings.limits
            )
        except InsultError as error:
            return Ack(raw, reply_to, error_reply(str(error), id=request_id))
        assert isinstance(op, StoreOp)
        return Ack(
            raw, reply_to, _reply_prefix(request_id), store_op=op.name, store_arg=op.argument
        )


def _reply_prefix(request_id: object) -> bytes:
    """``{"id": ..., "ok": true, "result": `` : the script appends the result and ``}``."""
    return json.dumps({"id": request_id, "ok": True})[:-1].encode() + b', "result": '


def serve(settings: Settings, node_id: str, stop: StopSignal) -> None:
    """Answer requests and broadcast until ``stop``."""
    keys = Keys(settings.namespace)
    client = connect(settings)
    store = RedisInsultStore(client, keys.store)
    if settings.load_defaults:
        store.add_many(load_default_insults())
    # A lease outliving one missed renewal but not two: a dead broadcaster is replaced
    # within about two intervals.
    lease = BroadcastLease(client, keys.broadcaster, node_id, 1.5 * settings.broadcast_interval)
    broadcaster = Broadcaster(
        settings.broadcast_interval,
        pick=lambda: store.random() if lease.hold() else "",
        send=lambda insult: client.publish(keys.broadcast, insult),
    )
    consumer = ReliableConsumer(
        client, keys.insults, node_id, settings, reply_ttl(settings), store_key=keys.store
    )
    broadcaster.start()
    log.info("serving %s, broadcasting on %s", keys.insults.queue, keys.broadcast)
    try:
        consume(consumer, _InsultHandler(settings), stop)
    finally:
        broadcaster.stop()
    lease.release()
    log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -m middlewares.redis.insult_service --node-id ID [settings]``."""
    run_process(
        "middlewares.redis.insult_service",
        "The InsultService on Redis: answers <ns>:insults:requests until SIGINT/SIGTERM.",
        "--node-id",
        serve,
        argv,
    )


if __name__ == "__main__":
    main()
