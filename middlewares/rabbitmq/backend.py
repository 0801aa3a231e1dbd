"""The RabbitMQ backend: which processes make up each service, and its clients."""

from __future__ import annotations

import logging

import redis

from middlewares.cluster import counters_key, lease_key, redis_client, store_key
from middlewares.contract import Backend, BrokerUnavailable, ProcessSpec
from middlewares.rabbitmq._amqp import Names, close_quietly, connect, link_errors_as_unavailable
from middlewares.rabbitmq.clients import (
    RabbitMqEchoClient,
    RabbitMqFilterClient,
    RabbitMqInsultClient,
)
from middlewares.settings import Settings

_PACKAGE = "middlewares.rabbitmq"

#: The module of a node of the n-node form, by service: the one-node processes, run
#: with ``--node-id``.
_NODE_MODULES = {"insult": f"{_PACKAGE}.insult_service", "filter": f"{_PACKAGE}.filter_worker"}

log = logging.getLogger(__name__)


def _cluster_keys(namespace: str) -> list[str]:
    """The Redis keys the n-node form keeps for a namespace (see middlewares.cluster)."""
    return [
        store_key(namespace),
        lease_key(namespace),
        counters_key(namespace, "insult"),
        counters_key(namespace, "filter"),
    ]


class RabbitMqBackend(Backend):
    """InsultService, InsultFilter workers and echo, all talking through one RabbitMQ broker."""

    name = "rabbitmq"
    broker = "rabbitmq"

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

    def node_process(self, service: str, settings: Settings, node: str) -> ProcessSpec:
        """One node: the service process or filter worker, with ``--node-id``.

        There is no coordinator: the nodes consume the same queue as competing consumers
        and the broker spreads the messages. A node that crashes is restarted; one
        stopped with SIGTERM finishes its request or task in hand and exits 0 (removed).
        """
        if service not in _NODE_MODULES:
            return super().node_process(service, settings, node)
        # The nodes keep their shared state in Redis: say so now, once, rather than
        # have every node fail at start and be restarted again and again.
        redis_client(settings).close()
        return ProcessSpec(
            f"{service}-node-{node}",
            _NODE_MODULES[service],
            [*settings.to_args(), "--node-id", node],
            restart=True,
            role="node",
        )

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
        """Delete the queues and exchanges of ``settings.namespace``, by name, and the Redis
        keys of its n-node form (when Redis answers), and nothing else."""
        self._cleanup_cluster_keys(settings)
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

    @staticmethod
    def _cleanup_cluster_keys(settings: Settings) -> None:
        try:
            client = redis_client(settings.with_changes(timeout=min(settings.timeout, 2.0)))
        except BrokerUnavailable:
            return  # no Redis, so no n-node form ever ran: nothing to delete
        try:
            client.delete(*_cluster_keys(settings.namespace))
        except redis.RedisError as error:
            log.warning("could not delete the n-node keys of %s: %s", settings.namespace, error)
        finally:
            client.close()


BACKEND = RabbitMqBackend()
