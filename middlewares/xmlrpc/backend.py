"""The XML-RPC backend: which processes make up each service, and its clients."""

from __future__ import annotations

import os
import socket

from middlewares.contract import Backend, ProcessSpec
from middlewares.settings import Settings
from middlewares.xmlrpc.clients import XmlRpcEchoClient, XmlRpcFilterClient, XmlRpcInsultClient

_SERVICE_MODULES = {
    "insult": "middlewares.xmlrpc.insult_service",
    "filter": "middlewares.xmlrpc.filter_service",
    "echo": "middlewares.xmlrpc.echo_service",
}


class XmlRpcBackend(Backend):
    """Standard-library XML-RPC servers, one per service, on the settings' ports."""

    name = "xmlrpc"

    def check(self, settings: Settings) -> None:
        """Nothing to check: XML-RPC needs no broker; a service reports a taken port itself."""

    def processes(self, service: str, settings: Settings, workers: int) -> list[ProcessSpec]:
        """The service's server and, for the filter, ``workers`` worker processes."""
        if service not in _SERVICE_MODULES:
            raise ValueError(
                f"unknown service {service!r}; choose one of {', '.join(_SERVICE_MODULES)}"
            )
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

    def insult_client(self, settings: Settings) -> XmlRpcInsultClient:
        return XmlRpcInsultClient(settings)

    def filter_client(self, settings: Settings) -> XmlRpcFilterClient:
        return XmlRpcFilterClient(settings)

    def echo_client(self, settings: Settings) -> XmlRpcEchoClient:
        return XmlRpcEchoClient(settings)

    def cleanup(self, settings: Settings) -> None:
        """Nothing to delete: every piece of state lives in the service processes, and
        goes when the deployment stops them."""


BACKEND = XmlRpcBackend()
