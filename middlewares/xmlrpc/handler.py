"""The HTTP side of an XML-RPC server (:class:`~middlewares.xmlrpc.transport.RpcServer`):
one request of a kept-alive connection, refused before its body is read when its
Content-Length is not a number within the limit, or when the server is busy."""

from __future__ import annotations

import logging
import xmlrpc.client
from contextlib import AbstractContextManager
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
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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
