"""The RabbitMQ backend: which processes make up each service, and its clients."""

from __future__ import annotations

from middlewares.contract import Backend, ProcessSpec
from middlewares.rabbitmq._amqp import Names, close_quietly, connect, link_errors_as_unavailable
from middlewares.rabbitmq.clients import (
    RabbitMqEchoClient,
    RabbitMqFilterClient,
    RabbitMqInsultClient,
)
from middlewares.settings import Settings

_PACKAGE = "middlewares.rabbitmq"


class RabbitMqBackend(Backend):
    """InsultService, InsultFilter workers and echo, all talking through one RabbitMQ broker."""

    name = "rabbitmq"

    def check(self, settings: Settings) -> None:
        """Raise BrokerUnavailable unless the broker accepts a connection."""
        close_quietly(connect(settings, "check"))

    def processes(self, service: str, settings: Settings, workers: int) -> list[ProcessSpec]:
        """One service process, or ``workers`` filter workers (no front process is needed)."""
        args = settings.to_args()
        if service == "insult":
            return [ProcessSpec("insult-service", f"{_PACKAGE}.insult_service", args)]
        if service == "filter":
            return [
                ProcessSpec(f"filter-worker-{n}", f"{_PACKAGE}.filter_worker", args, restart=True)
                for n in range(1, workers + 1)
            ]
        if service == "echo":
            return [ProcessSpec("echo-service", f"{_PACKAGE}.echo_service", args)]
        raise ValueError(f"unknown service {service!r}; expected insult, filter or echo")

    def insult_client(self, settings: Settings) -> RabbitMqInsultClient:
        """A connected InsultService client."""
        return RabbitMqInsultClient(settings)

    def filter_client(self, settings: Settings) -> RabbitMqFilterClient:
        """A connected InsultFilter client."""
        return RabbitMqFilterClient(settings)

    def echo_client(self, settings: Settings) -> RabbitMqEchoClient:
        """A connected echo client."""
        return RabbitMqEchoClient(settings)

    def cleanup(self, settings: Settings) -> None:
        """Delete the queues and exchanges of ``settings.namespace``, by name, and nothing else."""
        names = Names(settings.namespace)
        connection = connect(settings, "cleanup")
        try:
            with link_errors_as_unavailable(settings):
                channel = connection.channel()
                for queue in names.queues():
                    channel.queue_delete(queue)
                for exchange in names.exchanges():
                    channel.exchange_delete(exchange)
        finally:
            close_quietly(connection)


BACKEND = RabbitMqBackend()
