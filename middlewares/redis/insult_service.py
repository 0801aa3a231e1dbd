"""The InsultService process on Redis: ``python -m middlewares.redis.insult_service``.

It answers JSON requests from ``<ns>:insults:requests`` on each request's ``reply_to``
list and keeps the insults in the Redis set ``<ns>:insults:store``. All its state is in
Redis, so any number of these processes can serve one namespace as competing consumers:
that is the n-node form, one process per node. Every process runs a
:class:`middlewares.cluster.LeasedBroadcaster`; only the holder of the lease
``<ns>:insults:broadcaster`` publishes a random insult on ``<ns>:insults:broadcast``
every ``broadcast_interval`` seconds.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from middlewares.cluster import LeasedBroadcaster, RedisInsultStore, RestartSafeLease
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
from middlewares.service import dispatch_insult_request, error_reply
from middlewares.settings import Settings, simulate_work

log = logging.getLogger(__name__)


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
    request's effect happen exactly once, even when a request is re-delivered.

    That is why requests do not go through :class:`middlewares.cluster.RedisInsultStore`,
    which runs each operation as a command of its own: a second round trip, and an add
    that a crash between the two steps could apply without answering it. The script
    works on the same set (``cluster.store_key``), with the same canonical form."""

    def add(self, insult: str) -> Any:
        """SADD of the canonical insult; replies whether it was new."""
        return StoreOp("add", insult)

    def all(self) -> Any:
        """SMEMBERS, sorted."""
        return StoreOp("all")

    def random(self) -> Any:
        """SRANDMEMBER, or ""."""
        return StoreOp("random")


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
    """Answer requests and take part in the broadcaster election until ``stop``."""
    keys = Keys(settings.namespace)
    client = connect(settings)
    # Requests run their store operation inside the acknowledgement script (see
    # _StorePlanner); this store is for what happens outside requests: loading the
    # defaults and picking the insult to broadcast. Both name the same set.
    store = RedisInsultStore(client, settings.namespace, settings.limits)
    if settings.load_defaults:
        store.add_all(load_default_insults())
    interval = settings.broadcast_interval
    broadcaster = LeasedBroadcaster(
        # Restart-safe: a node the launcher restarts keeps its id (see the class).
        RestartSafeLease(
            client, settings.namespace, node_id, LeasedBroadcaster.lease_ttl(interval)
        ),
        interval,
        pick=store.random,
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
        # Also hands the lease over, so another node broadcasts without waiting for it
        # to expire.
        broadcaster.stop()
    log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -m middlewares.redis.insult_service --node-id ID [settings]``."""
    run_process(
        "middlewares.redis.insult_service",
        "The InsultService on Redis (one node of it): answers <ns>:insults:requests "
        "until SIGINT/SIGTERM.",
        serve,
        argv,
    )


if __name__ == "__main__":
    main()
