"""The Redis backend: which processes make up each service, its clients, and clean-up."""

from __future__ import annotations

import re
import uuid

import redis

from middlewares.cluster.client import connect, redis_errors_as_unavailable, unavailable
from middlewares.cluster.keys import Keys
from middlewares.cluster.presence import read_live_nodes
from middlewares.contract import Backend, BrokerUnavailable, LiveNode, ProcessSpec, Profile
from middlewares.redis.clients import RedisEchoClient, RedisFilterClient, RedisInsultClient
from middlewares.redis.transport import MIN_REDIS_VERSION
from middlewares.settings import Settings

_MODULES = {
    "insult": "middlewares.redis.insult_service",
    "filter": "middlewares.redis.filter_worker",
    "echo": "middlewares.redis.echo_service",
}

#: Keys deleted per UNLINK by :meth:`RedisBackend.cleanup`.
_CLEANUP_BATCH = 500


class RedisBackend(Backend):
    """InsultService, InsultFilter and echo with Redis as the transport.

    Every process is a consumer of a Redis list and keeps no state of its own, so each
    is restarted if it dies and takes back what it held (see ``transport``). The n-node
    form needs no coordinator, since Redis is the broker: a node is one such process,
    competing with the others for the service's list, and the 1-node form is the same
    processes under another name.
    """

    name = "redis"
    profile = Profile(
        label="Redis",
        colour="#7570b3",
        coupling="indirect, via lists",
        broker_processes=("redis-server",),
        mechanism=(
            "Indirect communication through lists: a client pushes a JSON request and "
            "blocks on its own reply list; service processes pop requests. Clients and "
            "services share only names (decoupled in space) and requests wait in Redis "
            "while no service runs (decoupled in time). Every operation crosses the broker "
            "twice (request and reply), each a network round trip. Redis executes "
            "commands on one thread and does little per command, so the Python processes "
            "around it (JSON, service logic) are usually what saturates. The filter's "
            "reliable-queue pattern removes a task only after its result is written: one "
            "more command per task, and nothing is lost if a worker dies."
        ),
        insult_path="client, Redis, service process, Redis, client: 2 round trips through Redis",
        filter_path=(
            "the same path (task list, worker, reply list), plus the reliable queue's removal"
        ),
    )

    def broker_version(self, settings: Settings) -> str:
        """The version Redis reports in ``INFO server``."""
        try:
            client = connect(settings)
        except BrokerUnavailable as error:
            return f"unavailable: {error}"
        try:
            return str(client.info("server")["redis_version"])
        except (redis.RedisError, KeyError) as error:
            return f"unavailable: {error}"
        finally:
            client.close()

    def check(self, settings: Settings) -> None:
        """Raise BrokerUnavailable unless a Redis of version 6.2 or newer answers."""
        client = connect(settings, timeout=min(settings.timeout, 3.0))
        try:
            version = str(client.info("server")["redis_version"])
        finally:
            client.close()
        found = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
        if found < MIN_REDIS_VERSION:
            wanted = ".".join(map(str, MIN_REDIS_VERSION))
            raise unavailable(
                settings,
                f"Redis {version} is too old, {wanted} or newer is needed; "
                "start Redis 7 (`python -m middlewares brokers up` uses the installed one)",
            )

    def processes(self, service: str, settings: Settings, workers: int) -> list[ProcessSpec]:
        """One InsultService or echo process, or ``workers`` filter workers.

        Node ids carry a token new to this deployment, so two deployments sharing a
        namespace never take each other's messages back, while a restarted process (same
        arguments, same id) recovers its own.
        """
        token = uuid.uuid4().hex[:8]
        count = workers if service == "filter" else 1
        return [self.node_process(service, settings, f"{token}-{n}") for n in range(1, count + 1)]

    def node_process(self, service: str, settings: Settings, node: str) -> ProcessSpec:
        """One consumer of the service's list with id ``node``; restarted if it crashes,
        let go when it exits 0 after a SIGTERM (it answers what it claimed first)."""
        if service not in _MODULES:
            raise ValueError(f"unknown service {service!r}; choose one of {', '.join(_MODULES)}")
        return ProcessSpec(
            f"redis-{service}-node-{node}",
            _MODULES[service],
            [*settings.to_args(), "--node-id", node],
            restart=True,
            role="node",
        )

    def insult_client(self, settings: Settings) -> RedisInsultClient:
        """A connected InsultService client."""
        return RedisInsultClient(settings)

    def filter_client(self, settings: Settings) -> RedisFilterClient:
        """A connected InsultFilter client."""
        return RedisFilterClient(settings)

    def echo_client(self, settings: Settings) -> RedisEchoClient:
        """A connected echo client."""
        return RedisEchoClient(settings)

    def live_nodes(self, service: str, settings: Settings) -> list[LiveNode]:
        """The nodes announced alive in Redis (:mod:`middlewares.cluster.presence`)."""
        return read_live_nodes(settings, service)

    def dead_letters(self, settings: Settings) -> dict[str, int]:
        """The length of each service's dead-letter list ``<ns>:<service>:dead``."""
        lists = [queue.dead for queue in Keys(settings.namespace).queues()]
        client = connect(settings)
        try:
            with redis_errors_as_unavailable(settings):
                pipe = client.pipeline(transaction=False)
                for name in lists:
                    pipe.llen(name)
                return dict(zip(lists, pipe.execute(), strict=True))
        finally:
            client.close()

    def cleanup(self, settings: Settings, service: str | None = None) -> list[str]:
        """Delete every ``<ns>:*`` key (or every key of ``service``), found with SCAN;
        other keys are never touched."""
        client = connect(settings)
        removed = 0
        try:
            for pattern in Keys(settings.namespace).patterns(service):
                batch: list[bytes] = []
                for key in client.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) >= _CLEANUP_BATCH:
                        removed += client.unlink(*batch)
                        batch.clear()
                if batch:
                    removed += client.unlink(*batch)
        finally:
            client.close()
        return [f"{removed} Redis keys"] if removed else []


BACKEND = RedisBackend()
