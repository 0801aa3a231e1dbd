"""The bare echo on Redis: ``python -m middlewares.redis.echo_service``.

The baseline the stress harness compares the InsultService with: the same request and
reply lists, the same reliable queue and JSON envelope, and no service logic at all. A
request ``{"id", "op": "echo", "args": [payload], "reply_to"}`` on ``<ns>:echo:requests``
is answered ``{"id", "ok": true, "result": payload}``.
"""

from __future__ import annotations

import logging
from typing import Any

from middlewares.cluster.client import connect, redis_errors_as_unavailable
from middlewares.cluster.keys import Keys
from middlewares.redis.plain import open_consumer
from middlewares.redis.transport import (
    Ack,
    Answer,
    consume,
    each_message,
    reply_address,
    reply_ttl,
)
from middlewares.runtime import ServiceProcess, service_main
from middlewares.service import ok_reply

log = logging.getLogger(__name__)


def _answer(keys: Keys) -> Answer:
    """Answers a request with its first argument."""

    def answer(raw: bytes, message: dict[str, Any]) -> Ack:
        reply_to = reply_address(message, keys)
        args = message.get("args")
        payload = args[0] if isinstance(args, list) and args else None
        return Ack(raw, reply_to, ok_reply(payload, id=message.get("id")))

    return answer


def serve(process: ServiceProcess) -> None:
    """Echo requests until stopped."""
    settings = process.settings
    with redis_errors_as_unavailable(settings):
        keys = Keys(settings.namespace)
        consumer = open_consumer(
            connect(settings), keys.echo, str(process.node_id), settings, reply_ttl(settings)
        )
        log.info("echoing %s", keys.echo.queue)
        consume(consumer, each_message(settings, _answer(keys)), process.stop)
    log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -m middlewares.redis.echo_service --node-id ID [settings]``."""
    service_main(
        "middlewares.redis.echo_service",
        "The bare echo on Redis: answers <ns>:echo:requests until SIGINT/SIGTERM.",
        serve,
        node_id="required",
        argv=argv,
    )


if __name__ == "__main__":
    main()
