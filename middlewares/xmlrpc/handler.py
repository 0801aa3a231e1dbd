"""The HTTP side of an XML-RPC server (:class:`~middlewares.xmlrpc.transport.RpcServer`):
one request of a kept-alive connection, refused before its body is read when its
Content-Length is not a number within the limit, or when the server is busy.

The request line and headers of an ordinary HTTP/1.0 or 1.1 request are read here, into
a plain dict: ``http.server`` builds an ``email.message.Message`` for every request,
which a profile of the filter front showed taking about half of its time per request.
Anything unusual (no version, another version, a malformed line) goes to the standard
library's parser and gets its answers.
"""

from __future__ import annotations

import logging
import time
import xmlrpc.client
from contextlib import AbstractContextManager
from email.utils import formatdate
from typing import Any, Protocol
from xmlrpc.server import SimpleXMLRPCRequestHandler

from middlewares.direct.connections import IDLE_TIMEOUT, ConnectionTable, Evicted, ServerBusy


class HandledServer(Protocol):
    """What the handler needs of its server (:class:`~middlewares.xmlrpc.transport.RpcServer`)."""

    rpc_path: str
    table: ConnectionTable
    max_request_bytes: int

    def call_under_way(self) -> AbstractContextManager[None]:
        """Count one request from its arrival until its reply is written."""
        ...

    def _marshaled_dispatch(
        self, data: bytes, dispatch_method: object = None, path: object = None
    ) -> bytes: ...

log = logging.getLogger(__name__)

#: Whether a request of each HTTP version closes its connection when it does not say.
_CLOSES_BY_DEFAULT = {"HTTP/1.1": False, "HTTP/1.0": True}
#: The standard library's limits on a header line and on the number of headers.
_MAX_LINE = 65536
_MAX_HEADERS = 100


class Headers(dict[str, str]):
    """A request's headers by lower-cased name, the first of a repeated one kept; looked
    up without regard to case, as ``email.message.Message`` does."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        """The header's value, or ``default``."""
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str | None:  # type: ignore[override]
        return super().get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class _HttpDate:
    """The ``Date`` header's value, formatted once a second rather than per reply."""

    def __init__(self) -> None:
        self._second = 0
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            # Two threads may both format it: each writes a correct value.
            self._text, self._second = formatdate(second, usegmt=True), second
        return self._text


_date = _HttpDate()


class RequestHandler(SimpleXMLRPCRequestHandler):
    """HTTP/1.1 keep-alive; buffered writes and no Nagle (set by the base class), so a
    reply leaves in one segment without waiting for a delayed ACK.

    The body is read only once its Content-Length is known to be a number within the
    server's limit and the server's budget of bytes in memory has room for it.
    """

    protocol_version = "HTTP/1.1"
    # Never gzip replies: on loopback compression costs CPU and saves nothing.
    encode_threshold = None
    # Every read and write of a connection: a silent one frees its thread after this.
    timeout = IDLE_TIMEOUT
    server: HandledServer

    def parse_request(self) -> bool:
        """Read the request line and headers; False once an error is answered."""
        line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = line.split()
        if len(words) != 3 or words[2] not in _CLOSES_BY_DEFAULT:
            return super().parse_request()
        self.requestline = line
        self.command, path, self.request_version = words
        self.path = "/" + path.lstrip("/") if path.startswith("//") else path
        self.close_connection = _CLOSES_BY_DEFAULT[self.request_version]
        headers = self._read_headers()
        if headers is None:
            return False
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        expect = headers.get("expect", "").lower()
        if expect == "100-continue" and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def _read_headers(self) -> Headers | None:
        """The header lines up to the blank one, or None once an error is answered."""
        headers = Headers()
        last = ""
        for _ in range(_MAX_HEADERS + 1):
            raw = self.rfile.readline(_MAX_LINE + 1)
            if len(raw) > _MAX_LINE:
                self.send_error(431, "Line too long")
                return None
            if raw in (b"\r\n", b"\n", b""):
                return headers
            text = raw.decode("iso-8859-1")
            if text[0] in " \t" and last:  # a folded line continues the header before it
                headers[last] = f"{dict.get(headers, last)} {text.strip()}"
                continue
            name, colon, value = text.partition(":")
            name = name.strip().lower()
            if not colon or not name:
                self.send_error(400, f"Bad header line {text.rstrip()[:100]!r}")
                return None
            if dict.__contains__(headers, name):
                last = ""
            else:
                headers[name] = value.strip()
                last = name
        self.send_error(431, "Too many headers")
        return None

    def is_rpc_path_valid(self) -> bool:
        return self.path == self.server.rpc_path

    def do_POST(self) -> None:
        if not self.is_rpc_path_valid():
            self.report_404()
            return
        length = self._content_length()
        if length is None:
            return
        table = self.server.table
        try:
            table.reserve(length)
        except ServerBusy as busy:
            self._refuse(503, f"{busy}; retry later")
            return
        try:
            data = self.rfile.read(length)
            if len(data) < length:  # the client hung up mid-body
                self.close_connection = True
                return
            data = self.decode_request_content(data)
            if data is not None:  # else refused, and answered
                self._run(data)
        finally:
            table.release(length)

    def _run(self, data: bytes) -> None:
        table = self.server.table
        try:
            table.begin(self.connection)
        except Evicted:
            self.close_connection = True  # closed to make room: the call does not run
            return
        try:
            with self.server.call_under_way():
                self._reply(self.server._marshaled_dispatch(data))
        finally:
            table.end(self.connection)

    def _content_length(self) -> int | None:
        """The body's length, or None once a refusal is sent."""
        raw = self.headers.get("Content-Length")
        limit = self.server.max_request_bytes
        if raw is None:
            self._refuse(411, "a Content-Length header is required")
        elif not (raw := raw.strip()).isascii() or not raw.isdigit():
            self._refuse(400, f"Content-Length must be a number of bytes, got {raw!r}")
        elif int(raw) > limit:
            self._refuse(413, f"request bodies are limited to {limit} bytes")
        else:
            return int(raw)
        return None

    def decode_request_content(self, data: bytes) -> bytes | None:
        """The body, gunzipped if it says so, to no more than the server's limit."""
        if self.headers.get("Content-Encoding", "identity").lower() != "gzip":
            return super().decode_request_content(data)
        try:
            return xmlrpc.client.gzip_decode(data, max_decode=self.server.max_request_bytes)
        except ValueError as error:
            self._refuse(400, f"cannot read the gzip body: {error}")
            return None

    def _reply(self, body: bytes) -> None:
        # What send_response and send_header would write, without their per-call work.
        head = (
            f"{self.protocol_version} 200 OK\r\nServer: {self.version_string()}\r\n"
            f"Date: {_date.now()}\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.wfile.write(head.encode("latin-1") + body)

    def report_404(self) -> None:
        served = self.server.rpc_path
        self._refuse(404, f"nothing is served at {self.path}; this port serves {served}")

    def _refuse(self, status: int, message: str) -> None:
        # The body was not read, so the connection cannot carry another request.
        body = message.encode()
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: %s", self.address_string(), format % args)
