"""The RabbitMQ backend: which processes make up each service, and its clients."""

from __future__ import annotations

import pika.exceptions

from middlewares.cluster.client import connect as connect_redis
from middlewares.cluster.presence import read_live_nodes
from middlewares.cluster.store import delete_shared_state
from middlewares.contract import Backend, BrokerUnavailable, LiveNode, ProcessSpec, Profile
from middlewares.rabbitmq.clients import RabbitMqEchoClient, RabbitMqInsultClient
from middlewares.rabbitmq.filter_client import RabbitMqFilterClient
from middlewares.rabbitmq.transport import (
    Names,
    close_quietly,
    connect,
    link_errors_as_unavailable,
)
from middlewares.settings import Settings

_PACKAGE = "middlewares.rabbitmq"

#: The module of a node of the n-node form, by service: the one-node processes, run
#: with ``--node-id``.
_NODE_MODULES = {"insult": f"{_PACKAGE}.insult_service", "filter": f"{_PACKAGE}.filter_worker"}

class RabbitMqBackend(Backend):
    """InsultService, InsultFilter workers and echo, all talking through one RabbitMQ broker."""

    name = "rabbitmq"
    profile = Profile(
        label="RabbitMQ",
        colour="#e7298a",
        coupling="indirect, via queues",
        broker_processes=("beam.smp",),
        mechanism=(
            "AMQP messaging: a request is published, routed to a queue, delivered to a "
            "consumer and acknowledged; the reply returns through the client's reply queue "
            "with a correlation id. Decoupled in space and time like Redis, with more "
            "broker work per message (routing, delivery tracking, acknowledgements, a "
            "durable task queue). Workers ack only after publishing the result and hold a "
            "bounded prefetch, which is what lets a window of tasks in flight keep workers "
            "busy without a round trip per task, and what makes a killed worker lose "
            "nothing. pika's blocking connection handles one stream of frames per client "
            "connection."
        ),
        insult_path=(
            "client, broker, service process, broker, client: publish, deliver, publish, "
            "deliver"
        ),
        filter_path="the same path (task queue, worker, reply queue), plus the worker's ack",
    )

    def broker_version(self, settings: Settings) -> str:
        """The version RabbitMQ announces when a connection opens."""
        try:
            connection = connect(settings, "version-probe")
        except BrokerUnavailable as error:
            return f"unavailable: {error}"
        try:
            # pika keeps the broker's Connection.Start properties on the connection.
            properties = connection._impl.server_properties or {}
            version = properties.get("version", b"unknown")
            return version.decode() if isinstance(version, bytes) else str(version)
        finally:
            close_quietly(connection)

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
        connect_redis(settings).close()
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

    def live_nodes(self, service: str, settings: Settings) -> list[LiveNode]:
        """The nodes announced alive in Redis (:mod:`middlewares.cluster.presence`)."""
        return read_live_nodes(settings, service)

    def dead_letters(self, settings: Settings) -> dict[str, int]:
        """The message count of each dead-letter queue ``<queue>.dead`` (0 if missing)."""
        names = Names(settings.namespace)
        counts: dict[str, int] = {}
        connection = connect(settings, "dead-letters")
        try:
            with link_errors_as_unavailable(settings):
                channel = connection.channel()
                for queue in map(names.dead, names.consumed()):
                    try:
                        declared = channel.queue_declare(queue, passive=True)
                        counts[queue] = declared.method.message_count
                    except pika.exceptions.ChannelClosedByBroker:
                        # 404: no consumer ever ran here; the broker closed the channel.
                        counts[queue] = 0
                        channel = connection.channel()
        finally:
            close_quietly(connection)
        return counts

    def cleanup(self, settings: Settings, service: str | None = None) -> list[str]:
        """Delete the queues and exchanges of ``settings.namespace`` (or of ``service``),
        by name, and the Redis keys of its n-node form (when Redis answers), and nothing
        else."""
        removed = delete_shared_state(settings, service)
        names = Names(settings.namespace)
        queues, exchanges = names.queues(service), names.exchanges(service)
        connection = connect(settings, "cleanup")
        found: list[str] = []
        try:
            with link_errors_as_unavailable(settings):
                channel = connection.channel()
                for kind, objects in (("queue", queues), ("exchange", exchanges)):
                    for name in objects:
                        # Deleting is idempotent; a passive declare first says whether
                        # there was something to delete (the broker closes the channel
                        # when there was not).
                        try:
                            if kind == "queue":
                                channel.queue_declare(name, passive=True)
                            else:
                                channel.exchange_declare(name, passive=True)
                        except pika.exceptions.ChannelClosedByBroker:
                            channel = connection.channel()
                            continue
                        if kind == "queue":
                            channel.queue_delete(name)
                        else:
                            channel.exchange_delete(name)
                        found.append(name)
        finally:
            close_quietly(connection)
        return [*removed, *(f"RabbitMQ {name}" for name in found)]


BACKEND = RabbitMqBackend()
