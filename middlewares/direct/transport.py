"""What a direct middleware (XML-RPC, Pyro4) provides so that the services run on it.

A direct transport knows how to serve a set of methods and how to reach them; nothing
else. Every service process, client and worker of both middlewares is written once in
this package against :class:`DirectTransport`.

Roles name where a service is found: ``insult`` (the one-node InsultService),
``master`` (the n-node InsultService's node directory), ``filter`` (the filter front)
and ``echo``. A transport maps them to its own places: a port and URL path for XML-RPC,
a registered name for Pyro4.

Service code raises the project's exceptions and each transport turns them into what its
protocol carries: a refusal (``ValueError``, :class:`~middlewares.core.InsultError`), a
wait that got nothing in time (``TimeoutError``), a request to retry later
(:class:`~middlewares.contract.RetryLater`), a node that is leaving
(:class:`~middlewares.direct.gate.NodeLeaving`) or a method served elsewhere
(:class:`ServedElsewhere`). A client's :class:`Link` raises them back as the contract's
errors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

from middlewares.contract import BrokerUnavailable, MiddlewareError, ServiceError
from middlewares.direct.gate import RequestGate
from middlewares.settings import Settings

#: The places a direct transport serves.
ROLES = ("insult", "master", "filter", "echo")


class ServedElsewhere(MiddlewareError):
    """The method exists in this deployment, but another process serves it (an n-node
    master asked for an InsultService call); the message says where to go."""


class MethodNotFound(ServiceError):
    """Raised by a :class:`Link`: the remote side has no such method."""


class Link(Protocol):
    """A persistent connection to one remote object, opened on first use.

    Raises :class:`BrokerUnavailable` when the object cannot be reached (or refuses the
    call because its node is leaving), :class:`~middlewares.contract.ServiceError` when
    it refuses the request, and :class:`~middlewares.contract.ServiceTimeout` when it
    does not answer in time.
    """

    def call(self, method: str, *args: Any, wait: float = 0.0) -> Any:
        """Call ``method(*args)``; ``wait`` is how long the object may block on purpose."""
        ...

    def connect(self) -> None:
        """Connect now, so an unreachable object is reported at once."""
        ...

    def local_address(self) -> str:
        """The local address of the connection: where the remote side can reach us."""
        ...

    def close(self) -> None:
        """Close the connection. Safe to call twice."""
        ...


class Server(Protocol):
    """A running server of one set of methods."""

    #: Where peers reach it: a URL, a ``PYRO:`` URI.
    address: str

    def leave(self, timeout: float) -> None:
        """Stop gracefully once its gate is closed: wait up to ``timeout`` seconds for the
        replies under way to be written."""
        ...


class SubscriberServer(Protocol):
    """A server in a client process that receives ``notify(insult)`` calls."""

    #: Where the service sends notifications.
    address: str

    def stop(self) -> None:
        """Stop serving. Safe to call twice."""
        ...


Methods = Mapping[str, Callable[..., Any]]


class DirectTransport(ABC):
    """How one direct middleware serves methods and reaches them."""

    #: The middleware's name on command lines, e.g. ``xmlrpc``.
    name: str
    #: What :meth:`Link.connect` raises when nothing serves a role there.
    absent: type[BrokerUnavailable]

    @abstractmethod
    def serve(
        self, settings: Settings, role: str, methods: Methods, gate: RequestGate | None = None
    ) -> AbstractContextManager[Server]:
        """Serve ``methods`` where clients look for ``role``, until the block ends.

        With ``gate``, every call runs through it (a stopping node refuses new calls).
        Raises :class:`~middlewares.contract.CannotStart` when the place is taken.
        """

    @abstractmethod
    def serve_node(
        self, settings: Settings, role: str, methods: Methods, gate: RequestGate
    ) -> AbstractContextManager[Server]:
        """Serve ``methods`` on a free port of ``settings.host``, for a node of the n-node
        form to register its :attr:`Server.address` (at the advertised host, see
        :mod:`middlewares.addresses`) with its master."""

    @abstractmethod
    def reach(self, settings: Settings, role: str, timeout: float | None = None) -> Link:
        """A link to where ``role`` is served (not connected yet)."""

    @abstractmethod
    def link(self, settings: Settings, address: str, hint: str, timeout: float) -> Link:
        """A link to the object at ``address`` (a node, a subscriber); ``hint`` says what
        to do when it does not answer."""

    @abstractmethod
    def check_address(self, value: object, what: str) -> str:
        """``value`` if it is an address of this transport, else ValueError naming
        ``what`` (``subscriber``, ``node``) and the kind of address wanted."""

    @abstractmethod
    def subscriber_server(
        self, notify: Callable[[object], bool], host: str, advertise: str
    ) -> SubscriberServer:
        """A started server listening on ``host`` (a free port), reached at
        ``advertise``, whose one method ``notify`` is ``notify``."""

    @abstractmethod
    def describe(self, role: str) -> str:
        """Where ``role`` is served, in words for ``--help``."""

