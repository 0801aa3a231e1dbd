"""XML-RPC on the wire: URLs, fault codes and the one server of every XML-RPC process.

:class:`RpcServer` is the server (a thread per connection, bounded as
:mod:`middlewares.direct.connections` says, HTTP/1.1 keep-alive, no Nagle, one path,
fault codes that say what went wrong); :func:`serving` runs one for as long as a service
process lives. The client side is in :mod:`.clients`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import socket
import socketserver
import sys
import threading
import urllib.parse
import xmlrpc.client
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from xmlrpc.server import SimpleXMLRPCServer

from middlewares.addresses import url_host
from middlewares.contract import CannotStart
from middlewares.direct.checks import MAX_MESSAGE_BYTES, message_limit
from middlewares.direct.connections import MAX_CONNECTIONS, ConnectionTable, ServerBusy
from middlewares.direct.gate import NodeLeaving, RequestGate
from middlewares.direct.transport import ServedElsewhere
from middlewares.messages import bad_messages, classify
from middlewares.settings import Settings
from middlewares.xmlrpc.handler import RequestHandler
from middlewares.xmlrpc.values import loads

log = logging.getLogger(__name__)

#: The port field of the settings for each role, and the URL path's last part.
PORT_FIELDS = {
    "insult": "insult_port",
    "master": "insult_port",
    "filter": "filter_port",
    "echo": "echo_port",
}
#: The n-node master listens where the one-node InsultService would.
PATHS = {"insult": "insult", "master": "insult", "filter": "filter", "echo": "echo"}

#: Fault codes, from the XML-RPC fault-code interoperability convention.
PARSE_ERROR = xmlrpc.client.NOT_WELLFORMED_ERROR  # -32700: the body is not XML-RPC
INVALID_REQUEST = xmlrpc.client.INVALID_XMLRPC  # -32600: XML-RPC, but not a methodCall
METHOD_NOT_FOUND = xmlrpc.client.METHOD_NOT_FOUND  # -32601
INVALID_PARAMS = xmlrpc.client.INVALID_METHOD_PARAMS  # -32602: wrong count or bad value
INTERNAL_ERROR = xmlrpc.client.INTERNAL_ERROR  # -32603: a bug; the service logs it
APPLICATION_ERROR = xmlrpc.client.APPLICATION_ERROR  # -32500: cannot do it now (queue full)
WAIT_TIMEOUT = -32000  # a call that waits on purpose got nothing in time
NODE_LEAVING = -32001  # n-node form: this node is leaving; the call did not run
NOT_AUTHORIZED = -32002  # a worker or node call without the deployment secret

#: Seconds between two checks of a serving thread for a stop request.
SHUTDOWN_POLL = 0.05

_BUSY_BODY = b"too many connections running calls; retry later\n"
_BUSY_REPLY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


def service_path(settings: Settings, role: str) -> str:
    """The URL path of a role: the namespace, then the service, e.g. ``/insultbench/filter``.

    Services of different namespaces may share a port number over time; the path makes
    a client of the wrong namespace (or the wrong service) get a clear 404.
    """
    return f"/{urllib.parse.quote(settings.namespace, safe='')}/{PATHS[role]}"


def service_url(settings: Settings, role: str) -> str:
    """The URL clients call for ``role`` (insult, master, filter or echo): on the
    coordinator's host, at the role's port."""
    port = getattr(settings, PORT_FIELDS[role])
    return f"http://{url_host(settings.coordinator_host)}:{port}{service_path(settings, role)}"


def serve_hint(role: str) -> str:
    """What to tell a user whose client found nothing serving ``role``."""
    if role == "master":
        return (
            "no n-node InsultService master answers there; start one with "
            "`python -m middlewares serve xmlrpc insult --nodes N`"
        )
    return f"start it with `python -m middlewares serve xmlrpc {role}`"


#: Longest URL accepted from a caller (a subscriber's, a node's); real ones are far shorter.
MAX_URL_CHARS = 512


def check_http_url(value: object, name: str) -> str:
    """An ``http://host:port/path`` URL argument, or ValueError saying what is wrong."""
    if not isinstance(value, str) or len(value) > MAX_URL_CHARS:
        raise ValueError(
            f"{name} must be an http:// URL string of at most {MAX_URL_CHARS} "
            f"characters, got {type(value).__name__}"
        )
    parts = urllib.parse.urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise ValueError(f"{name} must look like http://host:port/path, got {value!r}")
    return value


def _xml_reply(value: tuple[object] | xmlrpc.client.Fault) -> bytes:
    """A methodResponse body. Carriage returns go as ``&#13;``: XML parsers turn a raw
    one into a newline, and a text must come back exactly as it was."""
    text = xmlrpc.client.dumps(value, methodresponse=True, allow_none=False)
    return text.replace("\r", "&#13;").encode("utf-8", "xmlcharrefreplace")


class RpcServer(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    """An XML-RPC server of ``methods`` at one path, a daemon thread per connection, at
    most ``max_connections`` of them (see :class:`~middlewares.direct.connections.ConnectionTable`:
    a new connection takes the place of the one idle longest; only when every one is
    running a call does it get HTTP 503), and request bodies of at most
    ``max_request_bytes``.

    Every request is answered: a methodResponse, or a fault whose code says what went
    wrong and whose string names the problem (see the fault codes above and
    :func:`_fault`); an error the service did not mean is logged as a bug. Replies
    never contain ``<nil/>``, so any XML-RPC library can read them.

    A node of the n-node form passes its :class:`~middlewares.direct.gate.RequestGate`:
    every call runs through it, and once the gate is closed a call gets fault
    :data:`NODE_LEAVING` without running; :meth:`leave` then waits for the replies of
    the calls the gate let in before closing the connections.
    """

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        methods: Mapping[str, Callable[..., Any]],
        max_connections: int = MAX_CONNECTIONS,
        gate: RequestGate | None = None,
        max_request_bytes: int = MAX_MESSAGE_BYTES,
        advertise: str | None = None,
    ) -> None:
        self.rpc_path = path
        self._advertise = advertise
        self.max_request_bytes = max_request_bytes
        self.table = ConnectionTable(max_connections)
        self._gate = gate
        self._methods = dict(methods)
        self._signatures = {name: inspect.signature(call) for name, call in methods.items()}
        self._arities = {name: _arity(sig) for name, sig in self._signatures.items()}
        self._calls_under_way = 0
        self._calls_done = threading.Condition()
        super().__init__((host, port), RequestHandler, logRequests=False, allow_none=False)

    @property
    def port(self) -> int:
        """The port it listens on (useful when asked for port 0)."""
        return self.server_address[1]

    @property
    def address(self) -> str:
        """The URL it serves, at the advertised host (default: the one it listens on)."""
        host = self._advertise or self.server_address[0]
        return f"http://{url_host(host)}:{self.port}{self.rpc_path}"

    def _marshaled_dispatch(
        self, data: bytes, dispatch_method: object = None, path: object = None
    ) -> bytes:
        try:
            params, method = loads(data)
        except Exception as error:
            log.info("refused a request that is not well-formed XML-RPC: %s", error)
            return _xml_reply(
                xmlrpc.client.Fault(
                    PARSE_ERROR,
                    f"request is not well-formed XML-RPC ({error}); note that XML cannot "
                    "carry control characters other than tab, newline and carriage return",
                )
            )
        try:
            return _xml_reply((self._call(method, params),))
        except xmlrpc.client.Fault as fault:
            return _xml_reply(fault)
        except Exception as error:  # the result cannot be written (a type, a size, a depth)
            return _xml_reply(_fault(str(method), error))

    @contextlib.contextmanager
    def call_under_way(self) -> Iterator[None]:
        """Count one request from its arrival until its reply is written (see
        :meth:`leave`): a gate knows when a call returned, not when its reply left."""
        with self._calls_done:
            self._calls_under_way += 1
        try:
            yield
        finally:
            with self._calls_done:
                self._calls_under_way -= 1
                self._calls_done.notify_all()

    def _call(self, method: str | None, params: tuple[Any, ...]) -> Any:
        if self._gate is None:
            return self._run(method, params)
        try:
            with self._gate.admit():
                return self._run(method, params)
        except NodeLeaving as error:
            raise xmlrpc.client.Fault(NODE_LEAVING, str(error)) from None

    def _run(self, method: str | None, params: tuple[Any, ...]) -> Any:
        if method is None:
            raise xmlrpc.client.Fault(INVALID_REQUEST, "request is not a methodCall")
        call = self._methods.get(method)
        if call is None:
            raise xmlrpc.client.Fault(
                METHOD_NOT_FOUND,
                f"unknown method {method!r}; expected one of {', '.join(self._methods)}",
            )
        arity = self._arities[method]
        # Binding costs more than the call of a small method: count when counting will do.
        if arity is None or not arity[0] <= len(params) <= arity[1]:
            try:
                self._signatures[method].bind(*params)
            except TypeError as error:
                raise xmlrpc.client.Fault(INVALID_PARAMS, f"{method}: {error}") from None
        try:
            return call(*params)
        except xmlrpc.client.Fault:
            raise
        except Exception as error:
            raise _fault(method, error) from None

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            self.table.admit(request)
        except ServerBusy as busy:
            log.warning("refused a connection: %s", busy)
            with contextlib.suppress(OSError):
                request.sendall(_BUSY_REPLY)
            super().shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.table.remove(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-call is routine for a server: one line, no traceback.
        log.info("connection from %s:%s ended: %r", *client_address[:2], sys.exc_info()[1])

    def start(self) -> None:
        """Serve on a daemon thread until :meth:`stop`."""
        threading.Thread(
            # Polled more often than the default 0.5 s, so that stopping takes no longer.
            target=self.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL},
            name="xmlrpc-server",
            daemon=True,
        ).start()

    def leave(self, timeout: float) -> None:
        """Stop gracefully, once the gate is closed: refuse new connections, wait up to
        ``timeout`` seconds until every reply under way is written, then :meth:`stop`.

        A call arriving meanwhile is refused by the gate; if its connection is closed
        before the refusal is written, its client sees the node gone, which means the
        same: call another node.
        """
        self.shutdown()
        self.server_close()
        with self._calls_done:
            if not self._calls_done.wait_for(lambda: self._calls_under_way == 0, timeout):
                log.warning("closing with %d replies not written", self._calls_under_way)
        self.stop()

    def stop(self) -> None:
        """Stop accepting, and end every open connection (kept-alive ones included).

        Safe to call twice."""
        self.shutdown()
        self.server_close()
        for connection in self.table.connections():
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def _arity(signature: inspect.Signature) -> tuple[int, int] | None:
    """The fewest and most positional arguments ``signature`` takes, when that is all it
    takes; None when only binding can tell (``*args``, keyword-only parameters)."""
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    parameters = list(signature.parameters.values())
    if any(parameter.kind not in positional for parameter in parameters):
        return None
    required = sum(parameter.default is inspect.Parameter.empty for parameter in parameters)
    return required, len(parameters)


#: The fault code of each kind of failure (see :func:`middlewares.messages.classify`).
_FAULT_CODES = {
    "refused": INVALID_PARAMS,
    "retry": APPLICATION_ERROR,
    "timeout": WAIT_TIMEOUT,
    "internal": INTERNAL_ERROR,
}


def _fault(method: str, error: Exception) -> xmlrpc.client.Fault:
    """The fault answering a method that raised ``error``, or whose result could not be
    written (a RecursionError for a result nested too deeply is a refusal); a bug of the
    service is logged, bounded."""
    if isinstance(error, ServedElsewhere):
        return xmlrpc.client.Fault(METHOD_NOT_FOUND, str(error))
    if isinstance(error, PermissionError):  # no deployment secret
        return xmlrpc.client.Fault(NOT_AUTHORIZED, str(error))
    failure = classify(error)
    if failure.kind == "internal":
        bad_messages.error("%s failed: %s", method, failure.message, exc_info=error)
    return xmlrpc.client.Fault(_FAULT_CODES[failure.kind], failure.message)


@contextlib.contextmanager
def serving(
    settings: Settings,
    role: str,
    methods: Mapping[str, Callable[..., Any]],
    gate: RequestGate | None = None,
) -> Iterator[RpcServer]:
    """Serve ``methods`` at :func:`service_url` of ``role`` until the block ends; raises
    :class:`~middlewares.contract.CannotStart` when the port is taken."""
    port = getattr(settings, PORT_FIELDS[role])
    try:
        server = RpcServer(
            settings.host,
            port,
            service_path(settings, role),
            methods,
            gate=gate,
            max_request_bytes=message_limit(settings.limits),
        )
    except OSError as error:
        flag = "--" + PORT_FIELDS[role].replace("_", "-")
        raise CannotStart(
            f"cannot listen on {settings.host}:{port} ({error.strerror or error}); "
            f"stop what uses it or pick another {flag}"
        ) from None
    server.start()
    log.info("serving %s", server.address)
    try:
        yield server
    finally:
        server.stop()
