"""The RabbitMQ echo process: ``python -m middlewares.rabbitmq.echo_service``.

The baseline of the stress harness: the same request/reply pattern as the InsultService
(queue ``<ns>.echo.requests``, reply to ``reply_to`` with the request's
``correlation_id``), with no service logic at all: the reply is the request body.
"""

from __future__ import annotations

import logging

from middlewares.rabbitmq.rpc import RpcServer
from middlewares.rabbitmq.transport import Names, quiet_pika
from middlewares.runtime import ServiceProcess, service_main

log = logging.getLogger(__name__)


def serve(process: ServiceProcess) -> None:
    """Serve until SIGINT or SIGTERM."""
    settings = process.settings
    quiet_pika()
    queue = Names(settings.namespace).echo_requests
    server = RpcServer(settings, queue, lambda body: body, str.encode, role="echo-service")
    log.info("serving %s", queue)
    try:
        server.serve(process.stop)
    finally:
        server.close()
    log.info("stopped after %d requests", server.served)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.rabbitmq.echo_service``."""
    service_main(
        "middlewares.rabbitmq.echo_service",
        "The bare echo on RabbitMQ: answers <ns>.echo.requests with the request body "
        "until SIGINT/SIGTERM.",
        serve,
        node_id="none",
        argv=argv,
    )


if __name__ == "__main__":
    main()
