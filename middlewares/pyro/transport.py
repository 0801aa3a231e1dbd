"""Pyro4 on the wire: configuration, names, the name server and the serving side.

:func:`configure` is the one place Pyro4 is set up (serpent only, limits);
:func:`publish` serves objects under names of the namespace for as long as a service
process runs, :func:`running_daemon` serves them unnamed (an n-node node, found through
its master); both on daemons bounded as :mod:`.daemon` says, and registering names needs
the deployment secret. :func:`servant` turns a set of methods into one Pyro4 object
whose errors are builtins serpent can carry. The client side is in :mod:`.clients`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import Pyro4
import Pyro4.constants
import Pyro4.errors

from middlewares.addresses import advertised_host, url_host
from middlewares.contract import BrokerUnavailable, CannotStart
from middlewares.direct.checks import message_limit
from middlewares.direct.connections import IDLE_TIMEOUT
from middlewares.direct.gate import NodeLeaving, RequestGate
from middlewares.direct.transport import ServedElsewhere
from middlewares.messages import bad_messages, classify
from middlewares.pyro.daemon import SecretProxy, bounded_daemon
from middlewares.secret import SECRET_ENV
from middlewares.settings import Settings

log = logging.getLogger(__name__)

#: Registered names, below ``<ns>.``, of the object of each role.
NAMES = {
    "insult": "insult.service",
    "master": "insult.master",
    "filter": "insult.filter",
    "echo": "echo",
}

#: Longest ``PYRO:`` URI accepted from a peer (a subscriber, a node); real ones are short.
MAX_URI_CHARS = 512

#: A daemon closes a client connection that sends nothing for this long.
SERVER_IDLE_TIMEOUT = IDLE_TIMEOUT
#: Largest reply a client reads (a daemon reads requests of at most
#: :func:`~middlewares.direct.checks.message_limit`, see :mod:`.daemon`).
MAX_REPLY_BYTES = 64 * 1024 * 1024
#: How long a service waits for the name server the launcher starts next to it.
NAME_SERVER_WAIT = 15.0
#: Seconds between two checks that a service's names are still registered.
NAME_CHECK_INTERVAL = 2.0
#: Timeout of a name-server call (lookups and registrations are tiny).
_NAME_SERVER_TIMEOUT = 5.0


def configure() -> None:
    """Set Pyro4 up the same way in every process, client or server. Idempotent.

    Proxies get their own timeout (``settings.timeout``) in :class:`Remote`, so
    ``COMMTIMEOUT`` here only matters to daemons: it is how long a connection may stay
    silent. ``MAX_MESSAGE_SIZE`` bounds what a proxy reads; daemons bound requests
    tighter themselves. Never compress: daemons refuse compressed messages.
    """
    config = Pyro4.config
    config.SERIALIZER = "serpent"
    config.SERIALIZERS_ACCEPTED = {"serpent"}  # never pickle, dill or marshal
    config.COMPRESSION = False
    config.COMMTIMEOUT = SERVER_IDLE_TIMEOUT
    config.SOCK_NODELAY = True
    config.MAX_MESSAGE_SIZE = MAX_REPLY_BYTES
    config.MAX_RETRIES = 0  # a retried call could run twice; callers decide
    config.REQUIRE_EXPOSE = True
    # Pyro4 logs every connection at INFO, and a proxy logs as an ERROR every failure it
    # also raises; the raised error, translated, is what we report.
    logging.getLogger("Pyro4").setLevel(logging.WARNING)
    logging.getLogger("Pyro4.core").setLevel(logging.CRITICAL)


def object_name(settings: Settings, role: str) -> str:
    """The registered name of a role's object, e.g. ``insultbench.insult.filter``."""
    return f"{settings.namespace}.{NAMES[role]}"


def name_server_uri(settings: Settings) -> str:
    """The URI of the name server these settings point at."""
    host = url_host(settings.coordinator_host)
    return f"PYRO:{Pyro4.constants.NAMESERVER_NAME}@{host}:{settings.pyro_ns_port}"


def direct_uri(value: object, what: str) -> str:
    """The canonical form of a peer's direct ``PYRO:`` URI, or ValueError saying what is wrong."""
    if not isinstance(value, str) or len(value) > MAX_URI_CHARS:
        raise ValueError(
            f"{what} must be a PYRO: URI string of at most {MAX_URI_CHARS} "
            f"characters, got {type(value).__name__}"
        )
    try:
        uri = Pyro4.URI(value)
    except Pyro4.errors.PyroError as error:
        raise ValueError(f"{what} {value!r} is not a Pyro4 URI: {error}") from None
    if uri.protocol != "PYRO":
        raise ValueError(f"{what} must be a direct PYRO: URI, got {value!r}")
    return str(uri)


def serve_hint(role: str) -> str:
    """What to tell a user whose client found nothing serving ``role``."""
    if role == "master":
        return "start the deployment with `python -m middlewares serve pyro insult --nodes N`"
    return f"start it with `python -m middlewares serve pyro {role}`"


class NotRegistered(BrokerUnavailable):
    """The name server answers but has no object under the name: that service is not running."""


def name_server(
    settings: Settings, wait: float = 0.0, secret: str | None = None
) -> Pyro4.Proxy:
    """A connected proxy of the name server, retrying for up to ``wait`` seconds.

    Its calls carry the deployment secret (``secret``, else the one this process was
    started with, if any), without which the name server refuses to register or remove
    a name. Raises :class:`BrokerUnavailable` when none answers in time.
    """
    uri = name_server_uri(settings)
    secret = secret or os.environ.get(SECRET_ENV)
    deadline = time.monotonic() + wait
    while True:
        proxy = SecretProxy(uri, secret) if secret else Pyro4.Proxy(uri)
        proxy._pyroTimeout = min(settings.timeout, _NAME_SERVER_TIMEOUT)
        try:
            proxy._pyroBind()
            return proxy
        except Pyro4.errors.CommunicationError:
            proxy._pyroRelease()
            if time.monotonic() >= deadline:
                raise BrokerUnavailable(
                    uri,
                    "no Pyro4 name server answers there; "
                    + serve_hint("<insult|filter|echo>")
                    + ", which starts one when none runs",
                ) from None
        # The launcher starts the name server a moment before the services.
        time.sleep(0.1)


def name_server_answers(settings: Settings) -> bool:
    """True when a name server answers at the settings' host and port."""
    try:
        name_server(settings.with_changes(timeout=min(settings.timeout, 2.0)))._pyroRelease()
        return True
    except BrokerUnavailable:
        return False


def servant(methods: Mapping[str, Callable[..., Any]], gate: RequestGate | None = None) -> object:
    """One Pyro4 object exposing ``methods``, each call run through ``gate`` (if any)
    with its errors as builtins serpent can carry (see :func:`_builtin_error`)."""
    exposed: dict[str, Any] = {}
    for name, call in methods.items():
        exposed[name] = Pyro4.expose(_remote_method(name, call, gate))
    return type("Servant", (), exposed)()


def _remote_method(
    name: str, call: Callable[..., Any], gate: RequestGate | None
) -> Callable[..., Any]:
    def method(self: object, *args: Any) -> Any:
        try:
            return call(*args)
        except Exception as error:
            raise _builtin_error(error) from None

    def gated(self: object, *args: Any) -> Any:
        try:
            with admit():
                return call(*args)
        except Exception as error:
            raise _builtin_error(error) from None

    if gate is None:
        method.__name__ = name
        return method
    admit = gate.admit
    gated.__name__ = name
    return gated


#: The builtin exception a client hears for each kind of failure (see
#: :func:`middlewares.messages.classify`).
_BUILTIN_ERRORS: dict[str, type[Exception]] = {
    "refused": ValueError,
    "retry": RuntimeError,
    "timeout": TimeoutError,
    "internal": RuntimeError,
}


def _builtin_error(error: Exception) -> Exception:
    """What a client hears of ``error``: serpent carries only builtin exception types.

    A node that is leaving refuses with ``ConnectionRefusedError`` (the call did not
    run; the client's :class:`~middlewares.pyro.clients.Remote` makes that
    BrokerUnavailable, so the call is retried on another node). A RecursionError or
    MemoryError is a refusal (ValueError). Another builtin error (a TypeError for a call
    with the wrong arguments) is passed on as it is; anything else is a bug of the
    service, logged (bounded).
    """
    if isinstance(error, NodeLeaving):
        return ConnectionRefusedError(str(error))
    if isinstance(error, ServedElsewhere):
        return LookupError(str(error))
    failure = classify(error)
    if failure.kind == "internal":
        if type(error).__module__ == "builtins":
            return error
        bad_messages.error("a remote call failed: %s", failure.message, exc_info=error)
    return _BUILTIN_ERRORS[failure.kind](failure.message)


@contextlib.contextmanager
def publish(settings: Settings, objects: Mapping[str, object]) -> Iterator[Pyro4.Daemon]:
    """Serve ``objects`` (by role, e.g. ``filter``) until the block ends.

    Waits for the name server, refuses to start when a live object already holds one of
    the names (a stale one left by a killed process is replaced) or when the name server
    refuses the registration (no deployment secret), and on exit removes the names it
    registered before shutting the daemon down.
    """
    registered: dict[str, str] = {}
    with running_daemon(settings) as daemon:
        try:
            ns = name_server(settings, wait=NAME_SERVER_WAIT)
            try:
                for role, obj in objects.items():
                    name = object_name(settings, role)
                    uri = str(daemon.register(obj))
                    _claim(ns, name, uri, settings)
                    registered[name] = uri
            except Pyro4.errors.CommunicationError as error:
                raise BrokerUnavailable(
                    name_server_uri(settings), f"it stopped answering: {error}"
                ) from None
            finally:
                ns._pyroRelease()
            log.info("serving %s at %s", ", ".join(registered), daemon.locationStr)
            keeper = _NameKeeper(settings, registered)
            keeper.start()
            try:
                yield daemon
            finally:
                keeper.stop()
        finally:
            _release(settings, registered)


@contextlib.contextmanager
def running_daemon(settings: Settings) -> Iterator[Pyro4.Daemon]:
    """A daemon listening at ``settings.host`` on a free port, its URIs at the advertised
    host, serving until the block ends.

    Objects registered on it are served at once (a request for one not registered yet
    is refused as unknown, and nobody has its URI before it is registered anyway).
    """
    configure()
    try:
        daemon = bounded_daemon(
            settings.host, message_limit(settings.limits), advertised_host(settings)
        )
    except OSError as error:
        raise CannotStart(
            f"cannot listen on {settings.host} ({error.strerror or error}); "
            "give --host an address of this machine"
        ) from None
    try:
        threading.Thread(target=daemon.requestLoop, name="pyro-daemon", daemon=True).start()
        yield daemon
    finally:
        daemon.shutdown()


class NameTaken(CannotStart):
    """Another live object is registered under a name this service wants."""


def _claim(ns: Pyro4.Proxy, name: str, uri: str, settings: Settings) -> None:
    try:
        existing = ns.lookup(name)
    except Pyro4.errors.NamingError:
        existing = None
    if existing is not None and _answers(existing, settings):
        raise NameTaken(
            f"{name} is already served by {existing}; stop that service or pick another --namespace"
        )
    try:
        ns.register(name, uri, safe=False)
    except Pyro4.errors.NamingError as error:
        raise CannotStart(
            f"the name server refused to register {name} ({error}); start the service with "
            f"`python -m middlewares serve`, which gives it the deployment secret ({SECRET_ENV})"
        ) from None


def _answers(uri: Pyro4.URI, settings: Settings) -> bool:
    proxy = Pyro4.Proxy(uri)
    proxy._pyroTimeout = min(settings.timeout, 2.0)
    try:
        proxy._pyroBind()
        return True
    except Pyro4.errors.CommunicationError:
        return False
    finally:
        proxy._pyroRelease()


class _NameKeeper(threading.Thread):
    """Registers the names again when the name server has lost them (it was restarted,
    or another one took over its port), so clients that look them up find the service."""

    def __init__(self, settings: Settings, registered: Mapping[str, str]) -> None:
        super().__init__(name="name-keeper", daemon=True)
        self._settings = settings
        self._registered = dict(registered)
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(NAME_CHECK_INTERVAL):
            try:
                ns = name_server(self._settings)
            except BrokerUnavailable:
                continue  # none answers right now; try again next time
            try:
                for name, uri in self._registered.items():
                    try:
                        ns.lookup(name)
                    except Pyro4.errors.NamingError:
                        ns.register(name, uri, safe=True)
                        log.info("registered %s again: the name server had lost it", name)
            except Pyro4.errors.PyroError as error:
                log.debug("name check failed: %s", error)
            finally:
                ns._pyroRelease()

    def stop(self) -> None:
        """Stop checking, once the current check, if any, is done."""
        self._stopped.set()
        self.join()


def _release(settings: Settings, registered: Mapping[str, str]) -> None:
    """Remove our names, unless someone else has registered them since."""
    if not registered:
        return
    try:
        ns = name_server(settings)
    except BrokerUnavailable:
        return  # the name server went first; nothing left to clean
    try:
        for name, uri in registered.items():
            with contextlib.suppress(Pyro4.errors.NamingError):
                if str(ns.lookup(name)) == uri:
                    ns.remove(name)
    except Pyro4.errors.CommunicationError as error:
        log.warning("could not remove %s from the name server: %s", ", ".join(registered), error)
    finally:
        ns._pyroRelease()
