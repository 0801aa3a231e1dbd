"""The RabbitMQ InsultService process: ``python -m middlewares.rabbitmq.insult_service``.

It answers JSON requests from ``<ns>.insults.requests`` and, every broadcast interval,
publishes a random insult to the fanout exchange ``<ns>.insults.broadcast``.
"""

from __future__ import annotations

from middlewares.core import InsultError, InsultStore, Limits, load_default_insults
from middlewares.rabbitmq._amqp import (
    Names,
    RpcServer,
    declare_broadcast_exchange,
    quiet_pika,
    settings_parser,
)
from middlewares.runtime import StopSignal, configure_logging, run_main
from middlewares.service import (
    Broadcaster,
    InsultOps,
    decode_request,
    dispatch_insult_request,
    error_reply,
    ok_reply,
)
from middlewares.settings import Settings, from_args


def open_store(settings: Settings) -> InsultOps:
    """The store this node serves from: in-process for the one-node form.

    Everything else in this module only needs :class:`InsultOps`, so a store shared by
    several nodes can take its place without touching the request handling.
    """
    return InsultStore(load_default_insults() if settings.load_defaults else (), settings.limits)


def answer(store: InsultOps, limits: Limits, body: bytes) -> bytes:
    """The reply body for one request body; bad requests get an error reply, never raise."""
    try:
        request = decode_request(body)
        return ok_reply(
            dispatch_insult_request(store, request.get("op"), request.get("args", []), limits)
        )
    except InsultError as error:
        return error_reply(str(error))


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM."""
    parser = settings_parser("python -m middlewares.rabbitmq.insult_service", __doc__ or "")
    settings = from_args(parser.parse_args(argv))
    log = configure_logging("rabbitmq-insult")
    quiet_pika()
    stop = StopSignal()
    names = Names(settings.namespace)
    store = open_store(settings)
    limits = settings.limits
    server = RpcServer(
        settings,
        names.insult_requests,
        lambda body: answer(store, limits, body),
        error_reply,
        role="insult-service",
    )
    declare_broadcast_exchange(server.channel, names)
    # The broadcaster thread must not touch the serving channel: it hands each publish
    # to the serving thread.
    broadcaster = Broadcaster(
        settings.broadcast_interval,
        store.random,
        lambda insult: server.publish_threadsafe(names.broadcast, insult.encode()),
    )
    broadcaster.start()
    log.info("serving %s with %d insults", names.insult_requests, len(store.all()))
    try:
        server.serve(stop)
    finally:
        broadcaster.stop()
        broadcaster.join()
        server.close()
    log.info("stopped after %d requests", server.served)
    return 0


if __name__ == "__main__":
    run_main(main)
