"""The one contract every middleware implements, and the only thing harnesses import.

A middleware package (``middlewares/<name>/``) provides a :class:`Backend`: it says which
processes make up each service and builds the clients. Harnesses, tests and the launcher
get a backend by name from :mod:`middlewares.registry` and never branch on the name.
"""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from middlewares.settings import Settings

#: The services every middleware runs. ``echo`` is the bare round trip used as a baseline.
SERVICES = ("insult", "filter", "echo")


class MiddlewareError(Exception):
    """Base of the errors a client or service of this project raises on purpose."""


class BrokerUnavailable(MiddlewareError):
    """A broker or server could not be reached. The message names the URL and the fix."""

    def __init__(self, url: str, hint: str) -> None:
        super().__init__(f"cannot reach {url}: {hint}")
        self.url = url
        self.hint = hint


class ServiceError(MiddlewareError):
    """The service answered, but rejected the request; the message is the service's."""


class ServiceTimeout(MiddlewareError, TimeoutError):
    """No answer came within the deadline."""


BroadcastCallback = Callable[[str], None]


class _Closing:
    """Context-manager support for clients: ``with backend.insult_client(s) as c: ...``."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Release connections, threads and subscriptions. Safe to call twice."""


class InsultClient(_Closing, ABC):
    """Client of an InsultService. One instance holds one persistent connection."""

    @abstractmethod
    def add_insult(self, insult: str) -> bool:
        """Store an insult; True only when it was new. Raises :class:`ServiceError`."""

    @abstractmethod
    def get_insults(self) -> list[str]:
        """Every stored insult, in canonical (stripped, lower-case) form."""

    @abstractmethod
    def random_insult(self) -> str:
        """One stored insult chosen at random, or "" when the store is empty."""

    @abstractmethod
    def subscribe(self, callback: BroadcastCallback) -> None:
        """Receive every broadcast insult: ``callback(insult)`` runs on a client thread."""

    @abstractmethod
    def unsubscribe(self) -> None:
        """Stop receiving broadcasts. Does nothing when not subscribed."""


class FilterClient(_Closing, ABC):
    """Client of an InsultFilter work queue.

    Each result is handed out once: by :meth:`wait`, :meth:`result` or :meth:`filter`.
    """

    @abstractmethod
    def submit(self, text: str) -> str:
        """Queue one text; returns its task id once the service has accepted it."""

    @abstractmethod
    def submit_many(self, texts: Sequence[str]) -> list[str]:
        """Queue several texts without waiting for any result, in as few round trips as
        the transport allows; returns their task ids in order."""

    @abstractmethod
    def wait(self, task_ids: Sequence[str], timeout: float) -> dict[str, str]:
        """Block until at least one of ``task_ids`` is done or ``timeout`` seconds pass.

        Returns the censored texts of those done so far, by task id (empty on timeout).
        """

    @abstractmethod
    def get_results(self, limit: int = 100) -> list[str]:
        """Up to ``limit`` censored texts from the filter's result list, newest first."""

    def result(self, task_id: str) -> str | None:
        """The censored text of a task, or None while it is pending. Does not block."""
        return self.wait([task_id], 0).get(task_id)

    def filter(self, text: str, timeout: float | None = None) -> str:
        """Submit one text and wait for its censored form."""
        task_id = self.submit(text)
        deadline = time.monotonic() + (self.default_timeout if timeout is None else timeout)
        while (remaining := deadline - time.monotonic()) > 0:
            done = self.wait([task_id], remaining)
            if task_id in done:
                return done[task_id]
        raise ServiceTimeout(f"task {task_id} got no result in time")

    @property
    @abstractmethod
    def default_timeout(self) -> float:
        """Seconds :meth:`filter` waits when no timeout is given."""


class EchoClient(_Closing, ABC):
    """Client of the bare echo service: the transport's round trip, with no service logic."""

    @abstractmethod
    def echo(self, payload: str) -> str:
        """Send ``payload`` and return what the echo service sent back."""


@dataclass(frozen=True)
class ProcessSpec:
    """One OS process of a deployment, started as ``python -m <module> <args>``.

    Attributes:
        name: Label for logs, e.g. ``filter-worker-1``.
        module: The module to run with ``python -m``.
        args: Its command-line arguments.
        restart: Start it again if it dies while the deployment runs.
        role: What the process is, so the launcher knows what to cap: ``node`` (a node
            of the n-node form), ``coordinator`` (its master or filter front),
            ``support`` (what a coordinator needs, e.g. a name server) or ``service``
            (the one-node form).
    """

    name: str
    module: str
    args: list[str] = field(default_factory=list)
    restart: bool = False
    role: str = "service"


class Backend(ABC):
    """Everything a harness needs from one middleware, reached by name via the registry."""

    #: Name used on command lines: xmlrpc, pyro, redis or rabbitmq.
    name: str
    #: The broker server every request crosses (``redis`` or ``rabbitmq``, as named in
    #: ``stress.sampler.BROKER_PROCESSES``); None for a direct middleware.
    broker: str | None = None

    def path_brokers(self, service: str) -> tuple[str, ...]:
        """The broker servers each request of ``service`` crosses in the n-node form: the
        middleware's own, and Redis for the InsultService, whose store every n-node form
        keeps there. Harnesses watch their CPU to find what limits a run."""
        wanted = [self.broker, "redis" if service == "insult" else None]
        return tuple(dict.fromkeys(b for b in wanted if b))

    @abstractmethod
    def check(self, settings: Settings) -> None:
        """Raise :class:`BrokerUnavailable` unless what the services need is reachable."""

    @abstractmethod
    def processes(self, service: str, settings: Settings, workers: int) -> list[ProcessSpec]:
        """The processes that make up ``service`` with ``workers`` worker processes."""

    def coordinator_processes(
        self, service: str, settings: Settings, nodes: int
    ) -> list[ProcessSpec]:
        """The n-node form's coordination processes (a master, a name server, a queue
        front), started before the nodes; ``nodes`` is how many nodes they may wait for
        before handing out work, so the load spreads from the first request (0: none).
        None by default: a broker coordinates."""
        return []

    def node_process(self, service: str, settings: Settings, node: str) -> ProcessSpec:
        """One node of the n-node form, with id ``node``. A node process takes the flag
        ``--node-id``, joins the deployment of ``settings.namespace`` by itself, counts what
        it serves in :class:`middlewares.cluster.NodeCounters`, and on SIGTERM finishes what
        it accepted and exits with status 0."""
        raise NotImplementedError(f"{self.name} has no n-node form for {service} yet")

    def cluster_processes(self, service: str, settings: Settings, nodes: int) -> list[ProcessSpec]:
        """The whole n-node form: coordination, then ``nodes`` nodes. ``nodes=1`` is the
        same architecture with one node, the baseline of the speedup study."""
        token = uuid.uuid4().hex[:8]
        return [
            *self.coordinator_processes(service, settings, nodes),
            *(self.node_process(service, settings, f"{token}-{n}") for n in range(1, nodes + 1)),
        ]

    def node_counters(self, service: str, settings: Settings) -> dict[str, int]:
        """Requests or tasks served by each node of the n-node form, by node id."""
        from middlewares.cluster import NodeCounters, redis_client

        client = redis_client(settings)
        try:
            return NodeCounters.read(client, settings.namespace, service)
        finally:
            client.close()

    @abstractmethod
    def insult_client(self, settings: Settings) -> InsultClient:
        """A connected client of the InsultService in ``settings.namespace``."""

    @abstractmethod
    def filter_client(self, settings: Settings) -> FilterClient:
        """A connected client of the InsultFilter in ``settings.namespace``."""

    @abstractmethod
    def echo_client(self, settings: Settings) -> EchoClient:
        """A connected client of the echo service in ``settings.namespace``."""

    @abstractmethod
    def cleanup(self, settings: Settings) -> None:
        """Delete every broker object of ``settings.namespace`` (keys, queues, exchanges,
        registered names). Used by tests and harnesses after a run."""
