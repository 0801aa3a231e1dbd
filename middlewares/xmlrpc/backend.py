"""The XML-RPC backend: standard-library XML-RPC servers, one per service, on the
settings' ports, and the transport the direct middlewares' services run on."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from middlewares.addresses import advertised_host
from middlewares.contract import CannotStart, Profile
from middlewares.direct.backend import DirectBackend
from middlewares.direct.checks import message_limit
from middlewares.direct.gate import RequestGate
from middlewares.direct.transport import DirectTransport, Methods
from middlewares.settings import Settings
from middlewares.xmlrpc.clients import NotServing, Remote, SubscriberServer
from middlewares.xmlrpc.transport import (
    PATHS,
    PORT_FIELDS,
    RpcServer,
    check_http_url,
    serve_hint,
    service_path,
    service_url,
    serving,
)


class XmlRpcTransport(DirectTransport):
    """Each role at ``http://<host>:<port>/<namespace>/<service>``: the settings' port of
    the service (the n-node master on the InsultService's port), or a free port for a
    node; every call one round trip on a kept-alive HTTP/1.1 connection."""

    name = "xmlrpc"
    absent = NotServing

    def serve(
        self, settings: Settings, role: str, methods: Methods, gate: RequestGate | None = None
    ) -> contextlib.AbstractContextManager[RpcServer]:
        return serving(settings, role, methods, gate)

    @contextlib.contextmanager
    def serve_node(
        self, settings: Settings, role: str, methods: Methods, gate: RequestGate
    ) -> Iterator[RpcServer]:
        try:
            server = RpcServer(
                settings.host,
                0,
                service_path(settings, role),
                methods,
                gate=gate,
                max_request_bytes=message_limit(settings.limits),
                advertise=advertised_host(settings),
            )
        except OSError as error:
            raise CannotStart(
                f"cannot listen on {settings.host} ({error.strerror or error}); "
                "give --host an address of this machine"
            ) from None
        server.start()
        try:
            yield server
        finally:
            server.stop()

    def reach(self, settings: Settings, role: str, timeout: float | None = None) -> Remote:
        wait = settings.timeout if timeout is None else timeout
        return Remote(service_url(settings, role), serve_hint(role), wait)

    def link(self, settings: Settings, address: str, hint: str, timeout: float) -> Remote:
        return Remote(address, hint, timeout)

    def check_address(self, value: object, what: str) -> str:
        return check_http_url(value, f"{what} url")

    def subscriber_server(
        self, notify: Callable[[object], bool], host: str, advertise: str
    ) -> SubscriberServer:
        return SubscriberServer(notify, host, advertise)

    def describe(self, role: str) -> str:
        return f"http://HOST:{PORT_FIELDS[role].upper()}/NAMESPACE/{PATHS[role]}"


class XmlRpcBackend(DirectBackend):
    """Standard-library XML-RPC servers, one per service, on the settings' ports; in the
    n-node form the master listens on the insult port and each node on a port of its
    own (see :class:`~middlewares.direct.backend.DirectBackend` for the processes)."""

    name = "xmlrpc"
    profile = Profile(
        label="XML-RPC",
        colour="#1b9e77",
        coupling="direct, in time and space",
        broker_processes=(),
        mechanism=(
            "Synchronous request/response over HTTP/1.1 with XML bodies. Each call blocks "
            "the client for a full round trip, and XML is the costliest encoding of the four "
            "to build and parse in Python. Client and server are coupled in space (the "
            "client must know host and port) and in time (the server must be up at the "
            "moment of the call). Keep-alive connections spare a TCP handshake per call; "
            "the HTTP reply is the only acknowledgement. The server runs connections on "
            "threads of one Python process, so under the GIL its throughput stops growing "
            "once that process uses one core."
        ),
        insult_path="client and server: 1 round trip",
        filter_path=(
            "client and front, then front and worker: 2 round trips, both through the "
            "front's one Python process"
        ),
    )
    transport = XmlRpcTransport()
    #: Even if XML escaping made every character five bytes (2.5 MiB), a request with the
    #: ids of MAX_BATCH tasks stays under the servers' 4 MiB limit (MAX_MESSAGE_BYTES).
    submit_chunk_chars = 512 * 1024

    def check(self, settings: Settings) -> None:
        """Nothing to check: XML-RPC needs no broker; a service reports a taken port itself."""


BACKEND = XmlRpcBackend()
TRANSPORT = BACKEND.transport
