"""XML-RPC on the client side: one persistent connection per server called, and the
small server a subscriber runs in its client process.

A call costs one round trip on a kept-alive HTTP/1.1 connection with a timeout
(:class:`Remote`); faults become the contract's errors. The client classes of the
services are the direct middlewares' own (:mod:`middlewares.direct`), over these links.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
import xmlrpc.client
from collections.abc import Callable
from typing import Any

from middlewares.contract import BrokerUnavailable, MiddlewareError, ServiceError, ServiceTimeout
from middlewares.direct.transport import MethodNotFound
from middlewares.xmlrpc.transport import METHOD_NOT_FOUND, NODE_LEAVING, WAIT_TIMEOUT, RpcServer


class NotServing(BrokerUnavailable):
    """Nothing listens at the URL, or something that is not this service in this namespace."""


class NodeLeft(BrokerUnavailable):
    """A node of the n-node form is leaving and did not run the call: call another node."""


_FAULTS: dict[int, type[MiddlewareError]] = {
    WAIT_TIMEOUT: ServiceTimeout,
    METHOD_NOT_FOUND: MethodNotFound,
}


class _KeepAliveTransport(xmlrpc.client.Transport):
    """One kept HTTP/1.1 connection (http.client sets TCP_NODELAY on it), whose timeout
    can change per call, and no gzip."""

    accept_gzip_encoding = False

    def __init__(self, timeout: float) -> None:
        super().__init__(use_builtin_types=True)
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        if connection.sock is not None:
            connection.sock.settimeout(self.timeout)
        return connection

    def send_content(self, connection: http.client.HTTPConnection, request_body: bytes) -> None:
        # See _xml_reply: a carriage return must survive the XML parser.
        super().send_content(connection, request_body.replace(b"\r", b"&#13;"))


class Remote:
    """One persistent connection to an XML-RPC service, errors in the contract's terms.

    A fault is :class:`ServiceError` with the service's message (:class:`ServiceTimeout`
    for :data:`WAIT_TIMEOUT`, :class:`NodeLeft` for :data:`NODE_LEAVING`, :class:`MethodNotFound`
    for :data:`METHOD_NOT_FOUND`); no answer in time is :class:`ServiceTimeout`; nothing
    answering at the URL is :class:`NotServing`, other connection failures
    :class:`BrokerUnavailable`. After a failure the next call opens a new connection.
    Calls are serialized: a client belongs to one thread at a time.
    """

    def __init__(self, url: str, hint: str, timeout: float) -> None:
        """``hint`` says how to start the service when nothing answers at ``url``."""
        self.url = url
        self._hint = hint
        self._timeout = timeout
        self._transport = _KeepAliveTransport(timeout)
        # allow_none: a None argument reaches the service, which refuses it by name.
        self._proxy = xmlrpc.client.ServerProxy(url, self._transport, allow_none=True)
        self._host = urllib.parse.urlsplit(url).netloc
        self._lock = threading.Lock()

    def call(self, method: str, *args: Any, wait: float = 0.0) -> Any:
        """Call ``method(*args)``; ``wait`` is how long the service may block on purpose."""
        with self._lock:
            self._transport.timeout = self._timeout + wait
            try:
                return getattr(self._proxy, method)(*args)
            except xmlrpc.client.Fault as fault:
                if fault.faultCode == NODE_LEAVING:
                    raise NodeLeft(self.url, fault.faultString) from None
                kind = _FAULTS.get(fault.faultCode, ServiceError)
                raise kind(fault.faultString) from None
            except xmlrpc.client.ProtocolError as error:
                self._transport.close()
                if error.errcode == 404:
                    hint = f"another service answers there; {self._hint}"
                    raise NotServing(self.url, hint) from None
                status = f"HTTP {error.errcode} {error.errmsg}"
                raise ServiceError(f"{self.url} answered {status}") from None
            except TimeoutError:
                self._transport.close()
                raise ServiceTimeout(
                    f"{self.url} gave no answer within {self._timeout + wait:g} s"
                ) from None
            except ConnectionRefusedError:
                raise NotServing(self.url, self._hint) from None
            except (OSError, http.client.HTTPException) as error:
                self._transport.close()
                raise BrokerUnavailable(self.url, f"{self._hint} ({error!r})") from None

    def connect(self) -> None:
        """Open the connection now, so a missing service is reported at once."""
        with self._lock:
            self._open()

    def local_address(self) -> str:
        """The local address of this connection: where the service can reach us."""
        with self._lock:
            return self._open().sock.getsockname()[0]

    def _open(self) -> http.client.HTTPConnection:
        connection = self._transport.make_connection(self._host)
        if connection.sock is None:
            try:
                connection.connect()
            except ConnectionRefusedError:
                self._transport.close()
                raise NotServing(self.url, self._hint) from None
            except OSError as error:
                self._transport.close()
                raise BrokerUnavailable(self.url, f"{self._hint} ({error})") from None
        return connection

    def close(self) -> None:
        """Close the connection. Safe to call twice."""
        with self._lock:
            self._transport.close()


#: Path of a subscriber's own server.
SUBSCRIBER_PATH = "/subscriber"


class SubscriberServer:
    """A subscriber's XML-RPC server at ``SUBSCRIBER_PATH`` on a free port of ``host``,
    whose one method is ``notify``, reached at ``advertise``."""

    def __init__(self, notify: Callable[[object], bool], host: str, advertise: str) -> None:
        self._server = RpcServer(
            host, 0, SUBSCRIBER_PATH, {"notify": notify}, advertise=advertise
        )
        self.address = self._server.address
        self._server.start()

    def stop(self) -> None:
        """Stop serving. Safe to call twice."""
        self._server.stop()
