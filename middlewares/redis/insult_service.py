"""The InsultService process on Redis: ``python -m middlewares.redis.insult_service``.

It answers JSON requests from ``<ns>:insults:requests`` on each request's ``reply_to``
list and keeps the insults in the Redis set ``<ns>:insults:store``. All its state is in
Redis, so any number of these processes can serve one namespace as competing consumers:
that is the n-node form, one process per node. Every process runs a
:class:`~middlewares.cluster.lease.LeasedBroadcaster`; only the holder of the lease
``<ns>:insults:broadcaster`` publishes a random insult on ``<ns>:insults:broadcast``
every ``broadcast_interval`` seconds.

A request is parsed by the one :class:`~middlewares.service.InsultService` (validation
and the simulated service time); the operation itself runs inside the script that
acknowledges the request and writes its reply (``lua/ack.lua``), on the same set, so it
costs no extra round trip and happens exactly once even for a request delivered twice.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from middlewares.cluster.client import connect, redis_errors_as_unavailable
from middlewares.cluster.keys import Keys
from middlewares.cluster.lease import LeasedBroadcaster, RestartSafeLease
from middlewares.cluster.store import RedisInsultStore
from middlewares.core import load_default_insults
from middlewares.redis.plain import open_consumer
from middlewares.redis.transport import (
    Ack,
    Answer,
    consume,
    each_message,
    reply_address,
    reply_ttl,
)
from middlewares.runtime import ServiceProcess, StopSignal, service_main
from middlewares.service import InsultService
from middlewares.settings import Settings

log = logging.getLogger(__name__)


def _answerer(service: InsultService, keys: Keys) -> Answer:
    """Answers a request with an acknowledgement whose script runs its store operation."""

    def answer(raw: bytes, message: dict[str, Any]) -> Ack:
        reply_to = reply_address(message, keys)
        parsed = service.parse_message(message)
        return Ack(
            raw,
            reply_to,
            _reply_prefix(message.get("id")),
            store_op=parsed.op,
            store_arg=parsed.insult,
        )

    return answer


def _reply_prefix(request_id: object) -> bytes:
    """``{"id": ..., "ok": true, "result": `` : the script appends the result and ``}``."""
    return json.dumps({"id": request_id, "ok": True})[:-1].encode() + b', "result": '


def serve(process: ServiceProcess) -> None:
    """Answer requests and take part in the broadcaster election until stopped; a lost
    Redis ends the process with one line (the launcher restarts it)."""
    with redis_errors_as_unavailable(process.settings):
        _serve(process.settings, str(process.node_id), process.stop)


def _serve(settings: Settings, node_id: str, stop: StopSignal) -> None:
    keys = Keys(settings.namespace)
    client = connect(settings)
    # Requests run their store operation inside the acknowledgement script; this store
    # is for loading the defaults and picking the insult to broadcast. Both name the
    # same set.
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
    consumer = open_consumer(
        client, keys.insults, node_id, settings, reply_ttl(settings), store_key=keys.store
    )
    broadcaster.start()
    log.info("serving %s, broadcasting on %s", keys.insults.queue, keys.broadcast)
    try:
        answer = _answerer(InsultService(store, settings), keys)
        consume(consumer, each_message(settings, answer), stop)
    finally:
        # Also hands the lease over, so another node broadcasts without waiting for it
        # to expire.
        broadcaster.stop()
    log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -m middlewares.redis.insult_service --node-id ID [settings]``."""
    service_main(
        "middlewares.redis.insult_service",
        "The InsultService on Redis (one node of it): answers <ns>:insults:requests "
        "until SIGINT/SIGTERM.",
        serve,
        node_id="required",
        argv=argv,
    )


if __name__ == "__main__":
    main()
