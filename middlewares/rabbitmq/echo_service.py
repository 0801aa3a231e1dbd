"""The RabbitMQ echo process: ``python -m middlewares.rabbitmq.echo_service``.

The baseline of the stress harness: the same request/reply pattern as the InsultService
(queue ``<ns>.echo.requests``, reply to ``reply_to`` with the request's
``correlation_id``), with no service logic at all: the reply is the request body.
"""

from __future__ import annotations

from middlewares.rabbitmq._amqp import Names, RpcServer, quiet_pika, settings_parser
from middlewares.runtime import StopSignal, configure_logging, run_main
from middlewares.settings import from_args


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM."""
    parser = settings_parser("python -m middlewares.rabbitmq.echo_service", __doc__ or "")
    settings = from_args(parser.parse_args(argv))
    log = configure_logging("rabbitmq-echo")
    quiet_pika()
    stop = StopSignal()
    queue = Names(settings.namespace).echo_requests
    server = RpcServer(settings, queue, lambda body: body, str.encode, role="echo-service")
    log.info("serving %s", queue)
    try:
        server.serve(stop)
    finally:
        server.close()
    log.info("stopped after %d requests", server.served)
    return 0


if __name__ == "__main__":
    run_main(main)
