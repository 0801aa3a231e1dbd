"""Which processes make up the XML-RPC and Pyro4 services, in either form.
"""

from __future__ import annotations

import os
import socket

from middlewares.addresses import exposure_warning, is_loopback, is_wildcard
from middlewares.cluster.client import connect
from middlewares.cluster.presence import read_live_nodes
from middlewares.cluster.store import delete_shared_state
from middlewares.contract import (
    SHARED_STATE_PROCESSES,
    Backend,
    BrokerUnavailable,
    LiveNode,
    ProcessSpec,
)
from middlewares.direct.client import DirectEchoClient, FrontClient
from middlewares.direct.insult import DirectInsultClient
from middlewares.direct.transport import DirectTransport, Link, MethodNotFound
from middlewares.settings import Settings

#: The services of a direct middleware, and those with an n-node form.
SERVICES = ("insult", "filter", "echo")

NODE_SERVICES = ("insult", "filter")

#: The coordinator's flag saying how many nodes a starting deployment waits for.
EXPECT_FLAGS = {"insult": "--expect-nodes", "filter": "--expect-workers"}


class DirectBackend(Backend):
    """The XML-RPC and Pyro4 backends: their clients, and their processes.

    The one-node form is ``<package>.insult_service``, ``<package>.echo_service``, or
    the filter's front ``<package>.filter_front`` with ``workers`` pull workers. The
    n-node form is a coordinator (the InsultService's master, which keeps the directory
    of live nodes; the filter's front, a master-held queue) and nodes started with
    ``--node-id`` (InsultService processes that clients call directly; filter workers).
    Shared state lives in Redis (:mod:`middlewares.cluster`).

    ``_support_processes`` lists what must run first (Pyro4's name server).

    Every process is restarted when it dies: a coordinator (the master, the front, the
    name server) fails over instead of taking the deployment down. Nodes keep serving
    while the master is away and register again when it is back; workers wait for a
    restarted front. The n-node front keeps its queue in Redis (``--durable``); in the
    one-node form the clients submit again what a restarted front lost. At most once
    (``settings.guarantee``) neither: what a dead front or worker held is lost.
    """

    #: How this middleware serves and reaches methods.
    transport: DirectTransport
    #: Characters of text per ``submit_many`` call, below the transport's message limit.
    submit_chunk_chars: int

    @property
    def package(self) -> str:
        """The package of the middleware's modules, e.g. ``middlewares.xmlrpc``."""
        return f"middlewares.{self.name}"

    def insult_client(self, settings: Settings) -> DirectInsultClient:
        return DirectInsultClient(self.transport, settings)

    def filter_client(self, settings: Settings) -> FrontClient:
        return FrontClient(self._connected("filter", settings), settings, self.submit_chunk_chars)

    def echo_client(self, settings: Settings) -> DirectEchoClient:
        return DirectEchoClient(self._connected("echo", settings))

    def _connected(self, role: str, settings: Settings) -> Link:
        link = self.transport.reach(settings, role)
        try:
            link.connect()
        except BaseException:
            link.close()
            raise
        return link

    def processes(self, service: str, settings: Settings, workers: int) -> list[ProcessSpec]:
        """The service's server and, for the filter, ``workers`` worker processes."""
        _check_service(service, SERVICES, "service")
        args = settings.to_args()
        specs = self._support_processes(settings)
        specs.append(
            ProcessSpec(f"{self.name}-{service}", self._module(service), args, restart=True)
        )
        if service == "filter":
            # Unique per launcher and stable across restarts, so a restarted worker
            # reclaims (re-queues) exactly the tasks its killed predecessor held.
            launcher = f"{socket.gethostname()}-{os.getpid()}"
            specs += [
                ProcessSpec(
                    f"{self.name}-filter-worker-{n}",
                    f"{self.package}.filter_worker",
                    [*args, "--worker-id", f"{launcher}-{n}"],
                    restart=True,
                )
                for n in range(1, workers + 1)
            ]
        return specs

    def node_process(self, service: str, settings: Settings, node: str) -> ProcessSpec:
        """An InsultService node or a filter worker with id ``node``; restarted if it
        crashes, let go when it leaves (SIGTERM, exit 0)."""
        _check_service(service, NODE_SERVICES, "n-node service")
        _require_redis(settings)
        module = f"{self.package}.filter_worker" if service == "filter" else self._module(service)
        return ProcessSpec(
            f"{self.name}-{service}-node-{node}",
            module,
            [*settings.to_args(), "--node-id", node],
            restart=True,
            role="node",
        )

    def coordinator_processes(
        self, service: str, settings: Settings, nodes: int
    ) -> list[ProcessSpec]:
        """The master (insult) or the front (filter), told to wait for ``nodes`` nodes."""
        _check_service(service, NODE_SERVICES, "n-node service")
        _check_coordinator_host(settings)
        _require_redis(settings)
        module = f"{self.package}.master" if service == "insult" else self._module("filter")
        args = [*settings.to_args(), EXPECT_FLAGS[service], str(nodes)]
        if service == "filter" and settings.guarantee == "at-least-once":
            args.append("--durable")
        return [
            *self._support_processes(settings),
            ProcessSpec(
                f"{self.name}-{service}-master", module, args, restart=True, role="coordinator"
            ),
        ]

    def live_nodes(self, service: str, settings: Settings) -> list[LiveNode]:
        """The nodes announced alive in Redis (:mod:`middlewares.cluster.presence`)."""
        return read_live_nodes(settings, service)

    def check_join(self, service: str, settings: Settings) -> None:
        """Redis, and the coordinator at ``settings.coordinator_host``: the master of the
        InsultService (it must list nodes) or the filter front."""
        _check_service(service, NODE_SERVICES, "n-node service")
        self.check(settings)
        _require_redis(settings)
        role = "master" if service == "insult" else "filter"
        link = self.transport.reach(settings, role, timeout=min(settings.timeout, 3.0))
        try:
            if role == "master":
                link.call("nodes")
            else:
                link.connect()
        except MethodNotFound:
            raise BrokerUnavailable(
                self.transport.describe(role),
                "a one-node InsultService answers there, not an n-node master; start the "
                f"coordination with `python -m middlewares serve {self.name} insult --nodes 0`",
            ) from None
        finally:
            link.close()

    def exposure_warning(self, settings: Settings) -> str | None:
        """The warning for servers that listen on other than loopback."""
        return exposure_warning(self.profile.label, settings.host)

    def broker_processes(self, service: str, nodes: bool) -> tuple[str, ...]:
        """Redis in the n-node form, for both services: the InsultService's store, and
        the filter front's journal of accepted tasks."""
        return SHARED_STATE_PROCESSES if nodes else ()

    def cleanup(self, settings: Settings, service: str | None = None) -> list[str]:
        """Delete the n-node form's keys from Redis, if it answers. Everything else lives
        in the service processes, and goes when the deployment stops them."""
        return delete_shared_state(settings, service)

    def _support_processes(self, settings: Settings) -> list[ProcessSpec]:
        return []

    def _module(self, service: str) -> str:
        return f"{self.package}.{'filter_front' if service == 'filter' else service + '_service'}"


def _check_service(service: str, services: tuple[str, ...], kind: str) -> None:
    if service not in services:
        raise ValueError(f"unknown {kind} {service!r}; choose one of {', '.join(services)}")


def _check_coordinator_host(settings: Settings) -> None:
    """The coordination processes find one another at ``coordinator_host``: refuse a
    listen address they could not be found at."""
    host = settings.host
    if is_wildcard(host) or host == settings.coordinator_host:
        return
    if is_loopback(host) and is_loopback(settings.coordinator_host):
        return
    raise ValueError(
        f"the coordination would listen on {host} but be looked for at "
        f"{settings.coordinator_host}: give --coordinator-host {host} (or --host 0.0.0.0)"
    )


def _require_redis(settings: Settings) -> None:
    """The n-node form keeps its shared state in Redis: say so now if it does not answer."""
    connect(settings).close()
