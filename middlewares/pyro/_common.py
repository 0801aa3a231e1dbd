"""What every Pyro4 process of this package shares: configuration, names and connections.

:func:`configure` is the one place Pyro4 is set up (serpent only, thread pool, limits);
:class:`Remote` is the one persistent connection to a named object, with timeouts and
errors translated into the contract's; :func:`publish` serves objects under names of the
namespace for as long as a service process runs, :func:`running_daemon` serves them
unnamed (an n-node node, found through its master); :func:`node_request` is how a
node's remote method runs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import Pyro4
import Pyro4.constants
import Pyro4.errors
import redis

from middlewares import settings as settings_module
from middlewares.contract import BrokerUnavailable, ServiceError, ServiceTimeout
from middlewares.core import InsultError
from middlewares.direct import NodeLeaving, RequestGate
from middlewares.runtime import configure_logging, run_main
from middlewares.settings import Settings

T = TypeVar("T")

log = logging.getLogger(__name__)

#: Registered names, below ``<ns>.``, of the objects each service publishes.
INSULT_SERVICE = "insult.service"
INSULT_FILTER = "insult.filter"
ECHO = "echo"
#: The n-node InsultService's master (nodes are found through it, not by name).
INSULT_MASTER = "insult.master"

#: Longest ``PYRO:`` URI accepted from a peer (a subscriber, a node); real ones are short.
MAX_URI_CHARS = 512

#: A daemon closes a client connection that sends nothing for this long (see configure).
SERVER_IDLE_TIMEOUT = 300.0
#: A client re-opens a connection it left idle this long, before the daemon closes it.
_CLIENT_IDLE_LIMIT = SERVER_IDLE_TIMEOUT * 0.8
#: Largest Pyro4 message accepted or sent, so one request cannot exhaust memory.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
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
    silent. Connections are persistent, one pool thread each, so the pool is large.
    """
    config = Pyro4.config
    config.SERIALIZER = "serpent"
    config.SERIALIZERS_ACCEPTED = {"serpent"}  # never pickle, dill or marshal
    config.COMMTIMEOUT = SERVER_IDLE_TIMEOUT
    config.THREADPOOL_SIZE = 512
    config.THREADPOOL_SIZE_MIN = 8
    config.SOCK_NODELAY = True
    config.MAX_MESSAGE_SIZE = MAX_MESSAGE_BYTES
    config.MAX_RETRIES = 0  # a retried call could run twice; callers decide
    config.REQUIRE_EXPOSE = True
    # Pyro4 logs every connection at INFO, and a proxy logs as an ERROR every failure it
    # also raises; the raised error, translated, is what we report.
    logging.getLogger("Pyro4").setLevel(logging.WARNING)
    logging.getLogger("Pyro4.core").setLevel(logging.CRITICAL)


def object_name(settings: Settings, role: str) -> str:
    """The registered name of a service object, e.g. ``insultbench.insult.filter``."""
    return f"{settings.namespace}.{role}"


def name_server_uri(settings: Settings) -> str:
    """The URI of the name server these settings point at."""
    return f"PYRO:{Pyro4.constants.NAMESERVER_NAME}@{settings.host}:{settings.pyro_ns_port}"


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


def serve_hint(service: str) -> str:
    """What to tell a user whose client found no ``service``."""
    return f"start it with `python -m middlewares serve pyro {service}`"


class NotRegistered(BrokerUnavailable):
    """The name server answers but has no object under the name: that service is not running."""


def name_server(settings: Settings, wait: float = 0.0) -> Pyro4.Proxy:
    """A connected proxy of the name server, retrying for up to ``wait`` seconds.

    Raises :class:`BrokerUnavailable` when none answers in time.
    """
    uri = name_server_uri(settings)
    deadline = time.monotonic() + wait
    while True:
        proxy = Pyro4.Proxy(uri)
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


def expose_methods(names: Iterable[str]) -> Callable[[type[T]], type[T]]:
    """Class decorator: expose the methods ``names`` to Pyro4, inherited ones included.

    ``Pyro4.expose`` on a class marks only the methods the class defines itself, so
    each of these gets a delegating method of its own, leaving the base class (shared
    with the other transports) untouched.
    """

    def decorate(cls: type[T]) -> type[T]:
        for name in names:
            setattr(cls, name, Pyro4.expose(_delegate(getattr(cls, name))))
        return cls

    return decorate


def _delegate(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def method(self: object, *args: Any, **kwargs: Any) -> Any:
        return function(self, *args, **kwargs)

    return method


@contextlib.contextmanager
def domain_errors() -> Iterator[None]:
    """Re-raise domain refusals as ValueError: serpent only carries builtin exceptions."""
    try:
        yield
    except InsultError as error:
        raise ValueError(str(error)) from None


@contextlib.contextmanager
def node_request(gate: RequestGate) -> Iterator[None]:
    """Run one request of a service object through its node's gate.

    A stopping node refuses it with the builtin ``ConnectionRefusedError`` (the request
    was not executed, and :class:`Remote` turns that into :class:`BrokerUnavailable`,
    so a client retries it on another node). A failure of the shared store becomes a
    ``RuntimeError`` naming it: serpent cannot carry redis-py's own exceptions.
    """
    try:
        with gate.admit():
            yield
    except NodeLeaving as error:
        raise ConnectionRefusedError(str(error)) from None
    except redis.RedisError as error:
        raise RuntimeError(f"the shared insult store (Redis) failed: {error}") from None


class Remote:
    """One persistent connection to a Pyro4 object, named in the namespace or by URI.

    The name is resolved through the name server once; the proxy is then kept, so a call
    costs one round trip. Every call has a timeout. Errors become the contract's:
    a refusal raised by the object is :class:`ServiceError`, no answer in time is
    :class:`ServiceTimeout`, an unreachable object is :class:`BrokerUnavailable` (and the
    name is resolved again on the next call, in case the service moved).
    """

    def __init__(
        self, settings: Settings, target: str, hint: str, timeout: float | None = None
    ) -> None:
        """``target`` is a ``PYRO:`` URI or a registered name; ``hint`` says how to start it."""
        configure()
        self._settings = settings
        self._target = target
        self._hint = hint
        self._timeout = settings.timeout if timeout is None else timeout
        self._proxy: Pyro4.Proxy | None = None
        self._last_used = 0.0
        # Serializes calls (the proxy would anyway) and the per-call timeout changes.
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        """The URI of the object once resolved, else what it is looked up by."""
        if self._proxy is not None:
            return str(self._proxy._pyroUri)
        if self._target.startswith("PYRO:"):
            return self._target
        return f"PYRONAME:{self._target}@{self._settings.host}:{self._settings.pyro_ns_port}"

    def connect(self) -> None:
        """Resolve and connect now, so a missing service is reported at once."""
        with self._lock:
            self._connected()

    def call(self, method: str, *args: Any, wait: float = 0.0) -> Any:
        """Call ``method(*args)``; ``wait`` is how long the object may block on purpose."""
        with self._lock:
            proxy = self._connected()
            if wait:
                proxy._pyroTimeout = self._timeout + wait
            try:
                return getattr(proxy, method)(*args)
            except Exception as error:
                raise self._translate(error) from None
            finally:
                if wait:
                    proxy._pyroTimeout = self._timeout
                self._last_used = time.monotonic()

    def local_address(self) -> str:
        """The local address of this connection: where the remote object can reach us."""
        with self._lock:
            connection = self._connected()._pyroConnection
            return connection.sock.getsockname()[0]

    def close(self) -> None:
        """Close the connection. Safe to call twice."""
        with self._lock:
            if self._proxy is not None:
                self._proxy._pyroRelease()
                self._proxy = None

    def _connected(self) -> Pyro4.Proxy:
        if self._proxy is not None and time.monotonic() - self._last_used > _CLIENT_IDLE_LIMIT:
            self._proxy._pyroRelease()  # the daemon is about to drop it; reconnect cleanly
        if self._proxy is None:
            proxy = Pyro4.Proxy(self._resolve())
            proxy._pyroTimeout = self._timeout
            self._proxy = proxy
        if self._proxy._pyroConnection is None:
            try:
                self._proxy._pyroBind()
            except Exception as error:
                raise self._translate(error) from None
            self._last_used = time.monotonic()
        return self._proxy

    def _resolve(self) -> Pyro4.URI | str:
        if self._target.startswith("PYRO:"):
            return self._target
        ns = name_server(self._settings)
        try:
            return ns.lookup(self._target)
        except Pyro4.errors.NamingError:
            raise NotRegistered(self.uri, self._hint) from None
        except Pyro4.errors.CommunicationError:
            raise BrokerUnavailable(name_server_uri(self._settings), self._hint) from None
        finally:
            ns._pyroRelease()

    def _translate(self, error: Exception) -> Exception:
        if hasattr(error, "_pyroTraceback"):  # raised by the remote object
            if isinstance(error, TimeoutError):
                return ServiceTimeout(str(error))
            if isinstance(error, ConnectionRefusedError):  # a node that is leaving
                return BrokerUnavailable(self.uri, str(error))
            return ServiceError(str(error))
        if isinstance(error, Pyro4.errors.TimeoutError):
            return ServiceTimeout(f"{self.uri} gave no answer within {self._timeout:g} s")
        if isinstance(error, Pyro4.errors.CommunicationError):
            uri = self.uri
            self._proxy = None  # resolve the name again next time: the service may have moved
            return BrokerUnavailable(uri, f"{self._hint} ({error})")
        return error


@contextlib.contextmanager
def publish(settings: Settings, objects: Mapping[str, object]) -> Iterator[Pyro4.Daemon]:
    """Serve ``objects`` (by role, e.g. :data:`INSULT_SERVICE`) until the block ends.

    Waits for the name server, refuses to start when a live object already holds one of
    the names (a stale one left by a killed process is replaced), and on exit removes the
    names it registered before shutting the daemon down.
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
    """A daemon at ``settings.host`` on a free port, serving until the block ends.

    Objects registered on it are served at once (a request for one not registered yet
    is refused as unknown, and nobody has its URI before it is registered anyway).
    """
    configure()
    daemon = Pyro4.Daemon(host=settings.host, port=0)
    try:
        threading.Thread(target=daemon.requestLoop, name="pyro-daemon", daemon=True).start()
        yield daemon
    finally:
        daemon.shutdown()


class NameTaken(RuntimeError):
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
    ns.register(name, uri, safe=False)


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


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The command line of a service process: every settings flag, plus ``--help``."""
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    settings_module.add_arguments(parser)
    return parser


def run_service(role: str, serve: Callable[[], None]) -> None:
    """Run a service process's body with logging and a clean exit status.

    An unreachable name server or a name held by another live service is one line on
    stderr and a non-zero exit, never a traceback.
    """
    configure_logging(role)

    def body() -> int:
        try:
            serve()
        except NameTaken as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0

    run_main(body)
