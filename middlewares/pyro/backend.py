"""The Pyro4 backend: which processes make up each service, and its clients."""

from __future__ import annotations

import os
import socket

import Pyro4.errors

from middlewares.cluster import redis_client
from middlewares.contract import Backend, BrokerUnavailable, ProcessSpec
from middlewares.direct import delete_shared_state
from middlewares.pyro._common import configure, name_server, name_server_answers
from middlewares.pyro.clients import PyroEchoClient, PyroFilterClient, PyroInsultClient
from middlewares.settings import Settings

_SERVICE_MODULES = {
    "insult": "middlewares.pyro.insult_service",
    "filter": "middlewares.pyro.filter_service",
    "echo": "middlewares.pyro.echo_service",
}

#: What a node of the n-node form runs, by service.
_NODE_MODULES = {
    "insult": "middlewares.pyro.insult_service",
    "filter": "middlewares.pyro.filter_worker",
}


class PyroBackend(Backend):
    """Pyro4 objects found through a name server, which the launcher starts when needed.

    The n-node form: the InsultService's coordinator is a master
    (:mod:`middlewares.pyro.master`) keeping the registry of live nodes, and a node is
    an InsultService process with ``--node-id`` that clients call directly. The
    InsultFilter's coordinator is its front, a master-held queue, and a node is a
    worker with ``--node-id``. Shared state lives in Redis (:mod:`middlewares.cluster`).
    """

    name = "pyro"

    def check(self, settings: Settings) -> None:
        """Nothing to check: Pyro4 needs no broker, and a missing name server is started."""
        configure()

    def processes(self, service: str, settings: Settings, workers: int) -> list[ProcessSpec]:
        """A name server first when none answers, then the service (and its workers)."""
        _check_service(service, _SERVICE_MODULES, "service")
        args = settings.to_args()
        specs = self._name_server(settings)
        specs.append(ProcessSpec(f"pyro-{service}", _SERVICE_MODULES[service], args))
        if service == "filter":
            # Unique per launcher and stable across restarts, so a restarted worker
            # reclaims (re-queues) exactly the tasks its killed predecessor held.
            launcher = f"{socket.gethostname()}-{os.getpid()}"
            specs += [
                ProcessSpec(
                    f"pyro-filter-worker-{n}",
                    "middlewares.pyro.filter_worker",
                    [*args, "--worker-id", f"{launcher}-{n}"],
                    restart=True,
                )
                for n in range(1, workers + 1)
            ]
        return specs

    def node_process(self, service: str, settings: Settings, node: str) -> ProcessSpec:
        """An InsultService node or a filter worker with id ``node``; restarted if it
        crashes, let go when it leaves (SIGTERM, exit 0)."""
        _check_service(service, _NODE_MODULES, "n-node service")
        _require_redis(settings)
        return ProcessSpec(
            f"pyro-{service}-node-{node}",
            _NODE_MODULES[service],
            [*settings.to_args(), "--node-id", node],
            restart=True,
        )

    def coordinator_processes(
        self, service: str, settings: Settings, nodes: int
    ) -> list[ProcessSpec]:
        """The master (insult) or the front (filter), told to wait for ``nodes`` nodes."""
        _check_service(service, _NODE_MODULES, "n-node service")
        _require_redis(settings)
        module = "middlewares.pyro.master" if service == "insult" else _SERVICE_MODULES[service]
        flag = "--expect-nodes" if service == "insult" else "--expect-workers"
        args = [*settings.to_args(), flag, str(nodes)]
        return [*self._name_server(settings), ProcessSpec(f"pyro-{service}-master", module, args)]

    def _name_server(self, settings: Settings) -> list[ProcessSpec]:
        if name_server_answers(settings):
            return []
        return [
            ProcessSpec(
                "pyro-name-server",
                "middlewares.pyro.name_server",
                ["-n", settings.host, "-p", str(settings.pyro_ns_port)],
            )
        ]

    def insult_client(self, settings: Settings) -> PyroInsultClient:
        return PyroInsultClient(settings)

    def filter_client(self, settings: Settings) -> PyroFilterClient:
        return PyroFilterClient(settings)

    def echo_client(self, settings: Settings) -> PyroEchoClient:
        return PyroEchoClient(settings)

    def cleanup(self, settings: Settings) -> None:
        """Remove every name of the namespace from the name server, if one answers, and
        the n-node form's keys from Redis, if it answers."""
        configure()
        delete_shared_state(settings)
        try:
            ns = name_server(settings.with_changes(timeout=min(settings.timeout, 2.0)))
        except BrokerUnavailable:
            return  # no name server, no names
        try:
            ns.remove(prefix=f"{settings.namespace}.")
        except Pyro4.errors.CommunicationError:
            pass  # it went away meanwhile, and its names with it
        finally:
            ns._pyroRelease()


def _check_service(service: str, modules: dict[str, str], kind: str) -> None:
    if service not in modules:
        raise ValueError(f"unknown {kind} {service!r}; choose one of {', '.join(modules)}")


def _require_redis(settings: Settings) -> None:
    """The n-node form keeps its shared state in Redis: say so now if it does not answer."""
    redis_client(settings).close()


BACKEND = PyroBackend()
