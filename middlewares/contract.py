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


class RetryLater(MiddlewareError):
    """The service cannot do it now (a full queue, a failing shared store); the same
    request may succeed later."""


class StoreUnavailable(RetryLater):
    """The n-node form's shared store (Redis) failed during a request."""


class CannotStart(MiddlewareError):
    """A service process cannot start (its port is taken, its name is held): one line,
    exit status 1."""


BroadcastCallback = Callable[[str], None]


class _Closing:
    """Context-manager support for clients: ``with backend.insult_client(s) as c: ...``."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
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


@dataclass(frozen=True)
class LiveNode:
    """A node of a running n-node deployment, as it announced itself.

    Attributes:
        id: Its node id (``--node-id``).
        host: The address it reports for itself (see ``middlewares.addresses.node_host``).
    """

    id: str
    host: str


#: The process names of Redis: the n-node form of every middleware keeps its shared state
#: there, so its CPU belongs to every n-node run.
SHARED_STATE_PROCESSES = ("redis-server",)


@dataclass(frozen=True)
class Profile:
    """What a harness or a report needs to know about a middleware, so it never has to
    branch on its name.

    Attributes:
        label: The name readers know it by, e.g. ``RabbitMQ``.
        colour: Its colour in every figure.
        coupling: How clients and services are coupled, in a few words.
        broker_processes: Names of the broker's OS processes, sampled for CPU (none for
            a middleware without a broker).
        mechanism: How a call travels and what that costs, for the report.
        insult_path: What one InsultService call crosses.
        filter_path: What one filter task crosses.
    """

    label: str
    colour: str
    coupling: str
    broker_processes: tuple[str, ...]
    mechanism: str
    insult_path: str
    filter_path: str

    @property
    def direct(self) -> bool:
        """True when clients call the service's own processes, with no broker between."""
        return not self.broker_processes


class Backend(ABC):
    """Everything a harness needs from one middleware, reached by name via the registry."""

    #: Name used on command lines: xmlrpc, pyro, redis or rabbitmq.
    name: str
    #: What harnesses and reports show of it.
    profile: Profile

    def broker_processes(self, service: str, nodes: bool) -> tuple[str, ...]:
        """Names of the broker server processes each request of ``service`` crosses (the
        n-node form with ``nodes``): the middleware's own broker, and Redis where the
        n-node form keeps state a request touches (the InsultService's store). Harnesses
        sample their CPU to tell what limits a run."""
        shared = SHARED_STATE_PROCESSES if nodes and service == "insult" else ()
        return tuple(dict.fromkeys((*self.profile.broker_processes, *shared)))

    def broker_version(self, settings: Settings) -> str | None:
        """The version its broker reports (for the record of a study), or a line saying
        why it cannot be read; None for a middleware without a broker."""
        return None

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
        ``--node-id``, joins the deployment of ``settings.namespace`` by itself, counts
        what it serves in :class:`middlewares.cluster.counters.NodeCounters`, and on
        SIGTERM finishes what it accepted and exits with status 0."""
        raise NotImplementedError(f"{self.name} has no n-node form for {service} yet")

    def cluster_processes(self, service: str, settings: Settings, nodes: int) -> list[ProcessSpec]:
        """The whole n-node form: coordination, then ``nodes`` nodes. ``nodes=1`` is the
        same architecture with one node, the baseline of the speedup study."""
        token = uuid.uuid4().hex[:8]
        return [
            *self.coordinator_processes(service, settings, nodes),
            *(self.node_process(service, settings, f"{token}-{n}") for n in range(1, nodes + 1)),
        ]

    @abstractmethod
    def insult_client(self, settings: Settings) -> InsultClient:
        """A connected client of the InsultService in ``settings.namespace``."""

    @abstractmethod
    def filter_client(self, settings: Settings) -> FilterClient:
        """A connected client of the InsultFilter in ``settings.namespace``."""

    @abstractmethod
    def echo_client(self, settings: Settings) -> EchoClient:
        """A connected client of the echo service in ``settings.namespace``."""

    def live_nodes(self, service: str, settings: Settings) -> list[LiveNode]:
        """The nodes of the n-node form of ``service`` in ``settings.namespace`` that are
        alive now, wherever they run, by id: what a study of nodes started elsewhere
        waits for. Empty for a middleware without an n-node form. Raises
        :class:`BrokerUnavailable` when what keeps the list does not answer."""
        return []

    def check_join(self, service: str, settings: Settings) -> None:
        """Raise :class:`BrokerUnavailable` unless a node of ``service`` started with
        ``settings`` could join its deployment (its brokers, its coordinator)."""
        self.check(settings)

    def exposure_warning(self, settings: Settings) -> str | None:
        """One warning line when the servers of ``settings`` would be reachable from
        other machines without authenticating their clients; None otherwise."""
        return None

    def dead_letters(self, settings: Settings) -> dict[str, int]:
        """How many messages are set aside on each dead-letter list or queue of
        ``settings.namespace``, by its name: messages that crashed or hung their consumer
        ``settings.delivery_limit`` times (docs/PROTOCOL.md). Empty for a middleware
        whose services consume no queue. Raises :class:`BrokerUnavailable`."""
        return {}

    @abstractmethod
    def cleanup(self, settings: Settings, service: str | None = None) -> list[str]:
        """Delete every broker object of ``settings.namespace`` (keys, queues, exchanges,
        registered names), or only those of ``service``; returns what was removed, one
        phrase per kind (empty: nothing was there). Used by ``python -m middlewares
        clean``, by ``serve`` when it stops, and by tests and harnesses after a run."""
