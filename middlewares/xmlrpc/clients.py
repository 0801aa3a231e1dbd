"""XML-RPC on the client side: one persistent connection per server called, and the
small server a subscriber runs in its client process.

A call costs one round trip on a kept-alive HTTP/1.1 connection with a timeout
(:class:`Remote`); faults become the contract's errors. The client classes of the
services are the direct middlewares' own (:mod:`middlewares.direct`), over these links.
"""

from __future__ import annotations

import socket
import threading
import urllib.parse
import xmlrpc.client
from collections.abc import Callable
from typing import Any, BinaryIO

from middlewares.contract import BrokerUnavailable, MiddlewareError, ServiceError, ServiceTimeout
from middlewares.direct.transport import MethodNotFound
from middlewares.xmlrpc.transport import METHOD_NOT_FOUND, NODE_LEAVING, WAIT_TIMEOUT, RpcServer
from middlewares.xmlrpc.values import loads


class NotServing(BrokerUnavailable):
    """Nothing listens at the URL, or something that is not this service in this namespace."""


class NodeLeft(BrokerUnavailable):
    """A node of the n-node form is leaving and did not run the call: call another node."""


_FAULTS: dict[int, type[MiddlewareError]] = {
    WAIT_TIMEOUT: ServiceTimeout,
    METHOD_NOT_FOUND: MethodNotFound,
}


#: Longest status or header line read from a reply, and most header lines.
_MAX_LINE = 65536
_MAX_HEADERS = 100

#: Socket errors after which a request on a reused connection is sent once more on a new
#: one: the server closed the connection while it was idle (its idle timeout, or to make
#: room for another), before reading the request, as the standard library assumes.
_CLOSED_WHILE_IDLE = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


class _ServerHungUp(ConnectionError):
    """The connection ended before the first byte of a reply: the request may be sent
    again on a new one (see :data:`_CLOSED_WHILE_IDLE`)."""


class _BadReply(ValueError):
    """The reply is not HTTP/1.x with a Content-Length."""


class Remote:
    """One persistent connection to an XML-RPC service, errors in the contract's terms.

    The HTTP/1.1 of a call is written and read here over a plain socket (no Nagle, a
    timeout on every read and write): ``xmlrpc.client.ServerProxy`` reads every reply's
    headers with ``email.parser``, which a profile of the filter worker showed taking a
    third of its time per call. The XML of requests and replies is the standard library's.

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
        parts = urllib.parse.urlsplit(url)
        self._address = (parts.hostname or "", parts.port or 80)
        self._head = (
            f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Type: text/xml\r\nContent-Length: "
        ).encode("latin-1")
        self._sock: socket.socket | None = None
        self._reader: BinaryIO | None = None
        self._lock = threading.Lock()

    def call(self, method: str, *args: Any, wait: float = 0.0) -> Any:
        """Call ``method(*args)``; ``wait`` is how long the service may block on purpose."""
        # allow_none: a None argument reaches the service, which refuses it by name. A
        # carriage return goes as a reference: XML parsers turn a raw one into a newline.
        body = xmlrpc.client.dumps(args, method, allow_none=True).replace("\r", "&#13;")
        data = body.encode("utf-8", "xmlcharrefreplace")
        request = self._head + b"%d\r\n\r\n" % len(data) + data
        timeout = self._timeout + wait
        with self._lock:
            try:
                status, reason, reply = self._exchange(request, timeout)
            except TimeoutError:
                self._close()
                raise ServiceTimeout(f"{self.url} gave no answer within {timeout:g} s") from None
            except ConnectionRefusedError:
                self._close()
                raise NotServing(self.url, self._hint) from None
            except (OSError, _BadReply) as error:
                self._close()
                raise BrokerUnavailable(self.url, f"{self._hint} ({error!r})") from None
        if status == 404:
            raise NotServing(self.url, f"another service answers there; {self._hint}")
        if status != 200:
            raise ServiceError(f"{self.url} answered HTTP {status} {reason}")
        return self._result(reply)

    def _result(self, reply: bytes) -> Any:
        try:
            (value,), _ = loads(reply)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == NODE_LEAVING:
                raise NodeLeft(self.url, fault.faultString) from None
            kind = _FAULTS.get(fault.faultCode, ServiceError)
            raise kind(fault.faultString) from None
        except Exception as error:  # whatever else the reader raises: not XML-RPC
            raise ServiceError(f"{self.url} answered something not XML-RPC: {error!r}") from None
        return value

    def _exchange(self, request: bytes, timeout: float) -> tuple[int, str, bytes]:
        """Send one request and read its reply: status, reason, body. A reused
        connection the server had closed while idle is replaced once."""
        reused = self._sock is not None
        try:
            return self._round_trip(request, timeout)
        except (*_CLOSED_WHILE_IDLE, _ServerHungUp):
            self._close()
            if not reused:
                raise
        return self._round_trip(request, timeout)

    def _round_trip(self, request: bytes, timeout: float) -> tuple[int, str, bytes]:
        sock, reader = self._open()
        if sock.gettimeout() != timeout:  # setting it is a system call
            sock.settimeout(timeout)
        sock.sendall(request)
        status_line = reader.readline(_MAX_LINE + 1)
        if not status_line:
            raise _ServerHungUp("the server closed the connection")
        version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise _BadReply(f"not an HTTP/1.x status line: {status_line[:100]!r}")
        length, closes = self._read_headers(reader, version)
        body = reader.read(length)
        if len(body) < length:
            # The call may have run: it is not sent again.
            raise ConnectionError("the server closed the connection mid-reply")
        if closes:
            self._close()
        return int(code), reason, body

    @staticmethod
    def _read_headers(reader: BinaryIO, version: str) -> tuple[int, bool]:
        """The reply's Content-Length, and whether the server closes the connection."""
        length = None
        closes = version == "HTTP/1.0"
        for _ in range(_MAX_HEADERS):
            line = reader.readline(_MAX_LINE + 1)
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise ConnectionError("the server closed the connection mid-reply")
            if len(line) > _MAX_LINE:
                raise _BadReply("a header line is too long")
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length" and value.strip().isdigit():
                length = int(value)
            elif name == "connection":
                closes = value.strip().lower() == "close"
            elif name == "transfer-encoding":
                raise _BadReply(f"transfer-encoding {value.strip()} is not supported")
        else:
            raise _BadReply("too many header lines")
        if length is None:
            raise _BadReply("the reply has no Content-Length")
        return length, closes

    def connect(self) -> None:
        """Open the connection now, so a missing service is reported at once."""
        with self._lock:
            self._connect()

    def local_address(self) -> str:
        """The local address of this connection: where the service can reach us."""
        with self._lock:
            return self._connect().getsockname()[0]

    def _connect(self) -> socket.socket:
        """The connection, opened if needed, with the service's errors."""
        try:
            return self._open()[0]
        except ConnectionRefusedError:
            raise NotServing(self.url, self._hint) from None
        except OSError as error:
            raise BrokerUnavailable(self.url, f"{self._hint} ({error})") from None

    def _open(self) -> tuple[socket.socket, BinaryIO]:
        if self._sock is None or self._reader is None:
            sock = socket.create_connection(self._address, timeout=self._timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock, self._reader = sock, sock.makefile("rb")
        return self._sock, self._reader

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._reader = None

    def close(self) -> None:
        """Close the connection. Safe to call twice."""
        with self._lock:
            self._close()


#: Path of a subscriber's own server.
SUBSCRIBER_PATH = "/subscriber"


class SubscriberServer:
    """A subscriber's XML-RPC server at ``SUBSCRIBER_PATH`` on a free port of ``host``,
    whose one method is ``notify``, reached at ``advertise``."""

    def __init__(self, notify: Callable[[object], bool], host: str, advertise: str) -> None:
        self._server = RpcServer(host, 0, SUBSCRIBER_PATH, {"notify": notify}, advertise=advertise)
        self.address = self._server.address
        self._server.start()

    def stop(self) -> None:
        """Stop serving. Safe to call twice."""
        self._server.stop()
