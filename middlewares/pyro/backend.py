"""The Pyro4 backend: objects found through a name server, which the launcher starts
when none answers, and the transport the direct middlewares' services run on."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import Pyro4.errors

from middlewares.contract import BrokerUnavailable, ProcessSpec, Profile
from middlewares.direct.backend import DirectBackend
from middlewares.direct.gate import RequestGate
from middlewares.direct.transport import DirectTransport, Methods
from middlewares.pyro.clients import Remote, SubscriberServer
from middlewares.pyro.transport import (
    NAMES,
    NotRegistered,
    configure,
    direct_uri,
    name_server,
    name_server_answers,
    object_name,
    publish,
    running_daemon,
    servant,
    serve_hint,
)
from middlewares.secret import user_secret
from middlewares.settings import Settings

log = logging.getLogger(__name__)


class _Served:
    """A Pyro4 daemon serving one object, as the direct services see it."""

    def __init__(self, address: str) -> None:
        self.address = address

    def leave(self, timeout: float) -> None:
        """Nothing to wait for: the gate already waited for the calls in flight."""


class PyroTransport(DirectTransport):
    """Each role a Pyro4 object registered as ``<namespace>.<name>`` in the name server
    (see :data:`~middlewares.pyro.transport.NAMES`); a node is an unnamed object on a
    daemon of its own, found through its master."""

    name = "pyro"
    absent = NotRegistered

    @contextlib.contextmanager
    def serve(
        self, settings: Settings, role: str, methods: Methods, gate: RequestGate | None = None
    ) -> Iterator[_Served]:
        with publish(settings, {role: servant(methods, gate)}) as daemon:
            yield _Served(daemon.locationStr)

    @contextlib.contextmanager
    def serve_node(
        self, settings: Settings, role: str, methods: Methods, gate: RequestGate
    ) -> Iterator[_Served]:
        with running_daemon(settings) as daemon:
            yield _Served(str(daemon.register(servant(methods, gate))))

    def reach(self, settings: Settings, role: str, timeout: float | None = None) -> Remote:
        return Remote(settings, object_name(settings, role), serve_hint(role), timeout)

    def link(self, settings: Settings, address: str, hint: str, timeout: float) -> Remote:
        return Remote(settings, address, hint, timeout)

    def check_address(self, value: object, what: str) -> str:
        return direct_uri(value, f"{what} uri")

    def subscriber_server(
        self, notify: Callable[[object], bool], host: str, advertise: str
    ) -> SubscriberServer:
        return SubscriberServer(notify, host, advertise)

    def describe(self, role: str) -> str:
        return f"NAMESPACE.{NAMES[role]} in the Pyro4 name server at HOST:PYRO_NS_PORT"


#: The roles whose names each service registers (see ``NAMES``).
SERVICE_ROLES = {"insult": ("insult", "master"), "filter": ("filter",), "echo": ("echo",)}


class PyroBackend(DirectBackend):
    """Pyro4 objects found through a name server, which the launcher starts when none
    answers (see :class:`~middlewares.direct.backend.DirectBackend` for the processes)."""

    name = "pyro"
    profile = Profile(
        label="Pyro4",
        colour="#d95f02",
        coupling="direct, names via a name server",
        broker_processes=(),
        mechanism=(
            "Remote objects: blocking calls, coupled in time like XML-RPC, but decoupled in "
            "location by the name server (clients look objects up by name, then talk to "
            "them directly). Each proxy keeps its connection open, and serpent is a "
            "cheaper encoding than XML. The server serves connections from a thread pool "
            "in one Python process, so, as with XML-RPC, the GIL caps it at about one core."
        ),
        insult_path="client and daemon: 1 round trip",
        filter_path=(
            "client and front, then front and worker: 2 round trips, both through the "
            "front's one Python process"
        ),
    )
    transport = PyroTransport()
    #: Even if serpent wrote every character as ten bytes (2.5 MiB), a message with the
    #: ids of MAX_BATCH tasks stays under the daemons' 4 MiB limit (MAX_MESSAGE_BYTES).
    submit_chunk_chars = 256 * 1024

    def check(self, settings: Settings) -> None:
        """Nothing to check: Pyro4 needs no broker, and a missing name server is started."""
        configure()

    def cleanup(self, settings: Settings, service: str | None = None) -> list[str]:
        """Remove every name of the namespace (or of ``service``) from the name server,
        if one answers, and the n-node form's keys from Redis, if it answers."""
        configure()
        removed = super().cleanup(settings, service)
        try:
            ns = name_server(
                settings.with_changes(timeout=min(settings.timeout, 2.0)), secret=user_secret()
            )
        except BrokerUnavailable:
            return removed  # no name server, no names
        prefixes = (
            [f"{settings.namespace}."]
            if service is None
            else [f"{settings.namespace}.{NAMES[role]}" for role in SERVICE_ROLES[service]]
        )
        names = 0
        try:
            for prefix in prefixes:
                names += ns.remove(prefix=prefix)
        except Pyro4.errors.CommunicationError:
            pass  # it went away meanwhile, and its names with it
        except Pyro4.errors.NamingError as error:  # another user's name server
            log.warning("could not remove the names of %s: %s", settings.namespace, error)
        finally:
            ns._pyroRelease()
        return [*removed, f"{names} Pyro4 names"] if names else removed

    def _support_processes(self, settings: Settings) -> list[ProcessSpec]:
        """A name server, when none answers."""
        if name_server_answers(settings):
            return []
        return [
            ProcessSpec(
                "pyro-name-server",
                "middlewares.pyro.name_server",
                ["-n", settings.host, "-p", str(settings.pyro_ns_port)],
                restart=True,
                role="support",
            )
        ]


BACKEND = PyroBackend()
TRANSPORT = BACKEND.transport
