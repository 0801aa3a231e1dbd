"""Pyro4 on the client side: one persistent connection per object called, and the small
daemon a subscriber runs in its client process.

A name is resolved in the name server once and the proxy kept, so a call costs one round
trip (:class:`Remote`); errors become the contract's. The client classes of the services
are the direct middlewares' own (:mod:`middlewares.direct`), over these links.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import Pyro4
import Pyro4.errors

from middlewares.addresses import url_host
from middlewares.contract import BrokerUnavailable, ServiceError, ServiceTimeout
from middlewares.pyro.daemon import bounded_daemon
from middlewares.pyro.transport import (
    SERVER_IDLE_TIMEOUT,
    NotRegistered,
    configure,
    name_server,
    name_server_uri,
)
from middlewares.settings import Settings

#: A client re-opens a connection it left idle this long, before the daemon closes it.
_CLIENT_IDLE_LIMIT = SERVER_IDLE_TIMEOUT * 0.8


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
        host = url_host(self._settings.coordinator_host)
        return f"PYRONAME:{self._target}@{host}:{self._settings.pyro_ns_port}"

    def connect(self) -> None:
        """Resolve and connect now, so a missing service is reported at once."""
        with self._lock:
            self._connected()

    def call(self, method: str, *args: Any, wait: float = 0.0) -> Any:
        """Call ``method(*args)``; ``wait`` is how long the object may block on purpose."""
        with self._lock:
            proxy = self._connected()
            # In whole seconds, so that calls waiting about as long (a worker's pulls, a
            # client's filter calls) leave the socket's timeout as it is: setting it is
            # a system call.
            timeout = self._timeout + math.ceil(wait) if wait else self._timeout
            if proxy._pyroTimeout != timeout:
                proxy._pyroTimeout = timeout
            try:
                return getattr(proxy, method)(*args)
            except Exception as error:
                raise self._translate(error) from None
            finally:
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


@Pyro4.expose
class BroadcastListener:
    """The subscriber object the service calls."""

    def __init__(self, notify: Callable[[object], bool]) -> None:
        self._notify = notify

    def notify(self, insult: object) -> bool:
        """Receive one broadcast insult."""
        return self._notify(insult)


class SubscriberServer:
    """A subscriber's Pyro4 daemon on a free port of ``host``, reached at ``advertise``,
    on a thread of its own."""

    def __init__(self, notify: Callable[[object], bool], host: str, advertise: str) -> None:
        configure()
        self._daemon = bounded_daemon(host, advertise=advertise)
        self.address = str(self._daemon.register(BroadcastListener(notify)))
        threading.Thread(
            target=self._daemon.requestLoop, name="subscriber-daemon", daemon=True
        ).start()

    def stop(self) -> None:
        """Stop serving. Safe to call twice."""
        self._daemon.shutdown()
