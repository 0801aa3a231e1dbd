"""The bare echo on Redis: ``python -m middlewares.redis.echo_service``.

The baseline the stress harness compares the InsultService with: the same request and
reply lists, the same reliable queue and JSON envelope, and no service logic at all. A
request ``{"id", "op": "echo", "args": [payload], "reply_to"}`` on ``<ns>:echo:requests``
is answered ``{"id", "ok": true, "result": payload}``.
"""

from __future__ import annotations

import logging

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
from middlewares.service import ok_reply
from middlewares.settings import Settings

log = logging.getLogger(__name__)


def _echo(messages: list[bytes]) -> list[Ack]:
    acks = []
    for raw in messages:
        request = parse_request(raw)
        if request is None:
            acks.append(Ack(raw))
            continue
        message, reply_to = request
        args = message.get("args")
        payload = args[0] if isinstance(args, list) and args else None
        acks.append(Ack(raw, reply_to, ok_reply(payload, id=message.get("id"))))
    return acks


def serve(settings: Settings, node_id: str, stop: StopSignal) -> None:
    """Echo requests until ``stop``."""
    keys = Keys(settings.namespace)
    consumer = ReliableConsumer(
        connect(settings), keys.echo, node_id, settings, reply_ttl=reply_ttl(settings)
    )
    log.info("echoing %s", keys.echo.queue)
    consume(consumer, _echo, stop)
    log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -m middlewares.redis.echo_service --node-id ID [settings]``."""
    run_process(
        "middlewares.redis.echo_service",
        "The bare echo on Redis: answers <ns>:echo:requests until SIGINT/SIGTERM.",
        serve,
        argv,
    )


if __name__ == "__main__":
    main()
