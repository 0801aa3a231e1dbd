"""The XML-RPC backend: which processes make up each service, and its clients."""

from __future__ import annotations

import os
import socket

from middlewares.cluster import redis_client
from middlewares.contract import Backend, ProcessSpec
from middlewares.direct import delete_shared_state
from middlewares.settings import Settings
from middlewares.xmlrpc.clients import XmlRpcEchoClient, XmlRpcFilterClient, XmlRpcInsultClient

_SERVICE_MODULES = {
    "insult": "middlewares.xmlrpc.insult_service",
    "filter": "middlewares.xmlrpc.filter_service",
    "echo": "middlewares.xmlrpc.echo_service",
}

#: The n-node form, by service: its coordinator, and what one node runs.
_COORDINATOR_MODULES = {
    "insult": "middlewares.xmlrpc.master",
    "filter": "middlewares.xmlrpc.filter_service",
}
_NODE_MODULES = {
    "insult": "middlewares.xmlrpc.insult_service",
    "filter": "middlewares.xmlrpc.filter_worker",
}
#: The coordinator's flag saying how many nodes a starting deployment waits for.
_EXPECT_FLAGS = {"insult": "--expect-nodes", "filter": "--expect-workers"}


class XmlRpcBackend(Backend):
    """Standard-library XML-RPC servers, one per service, on the settings' ports.

    The n-node form: the InsultService's coordinator is a master
    (:mod:`middlewares.xmlrpc.master`) on the insult port keeping the directory of live
    nodes, and a node is an InsultService process with ``--node-id`` on a port of its
    own that clients call directly. The InsultFilter's coordinator is its front, a
    master-held queue, and a node is a worker with ``--node-id``. Shared state lives in
    Redis (:mod:`middlewares.cluster`).
    """

    name = "xmlrpc"

    def check(self, settings: Settings) -> None:
        """Nothing to check: XML-RPC needs no broker; a service reports a taken port itself."""

    def processes(self, service: str, settings: Settings, workers: int) -> list[ProcessSpec]:
        """The service's server and, for the filter, ``workers`` worker processes."""
        _check_service(service, _SERVICE_MODULES)
        args = settings.to_args()
        specs = [ProcessSpec(f"xmlrpc-{service}", _SERVICE_MODULES[service], args)]
        if service == "filter":
            # Unique per launcher and stable across restarts, so a restarted worker
            # reclaims (re-queues) exactly the tasks its killed predecessor held.
            launcher = f"{socket.gethostname()}-{os.getpid()}"
            specs += [
                ProcessSpec(
                    f"xmlrpc-filter-worker-{n}",
                    "middlewares.xmlrpc.filter_worker",
                    [*args, "--worker-id", f"{launcher}-{n}"],
                    restart=True,
                )
                for n in range(1, workers + 1)
            ]
        return specs

    def node_process(self, service: str, settings: Settings, node: str) -> ProcessSpec:
        """An InsultService node or a filter worker with id ``node``; restarted if it
        crashes, let go when it leaves (SIGTERM, exit 0)."""
        _check_service(service, _NODE_MODULES)
        _require_redis(settings)
        return ProcessSpec(
            f"xmlrpc-{service}-node-{node}",
            _NODE_MODULES[service],
            [*settings.to_args(), "--node-id", node],
            restart=True,
        )

    def coordinator_processes(
        self, service: str, settings: Settings, nodes: int
    ) -> list[ProcessSpec]:
        """The master (insult) or the front (filter), told to wait for ``nodes`` nodes."""
        _check_service(service, _COORDINATOR_MODULES)
        _require_redis(settings)
        args = [*settings.to_args(), _EXPECT_FLAGS[service], str(nodes)]
        return [ProcessSpec(f"xmlrpc-{service}-master", _COORDINATOR_MODULES[service], args)]

    def insult_client(self, settings: Settings) -> XmlRpcInsultClient:
        return XmlRpcInsultClient(settings)

    def filter_client(self, settings: Settings) -> XmlRpcFilterClient:
        return XmlRpcFilterClient(settings)

    def echo_client(self, settings: Settings) -> XmlRpcEchoClient:
        return XmlRpcEchoClient(settings)

    def cleanup(self, settings: Settings) -> None:
        """Delete the n-node form's keys from Redis, if it answers. Everything else lives
        in the service processes, and goes when the deployment stops them."""
        delete_shared_state(settings)


def _check_service(service: str, modules: dict[str, str]) -> None:
    if service not in modules:
        raise ValueError(f"unknown service {service!r} here; choose one of {', '.join(modules)}")


def _require_redis(settings: Settings) -> None:
    """The n-node form keeps its shared state in Redis: say so now if it does not answer."""
    redis_client(settings).close()


BACKEND = XmlRpcBackend()
