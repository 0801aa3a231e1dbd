"""The Pyro4 daemons of this package (services, subscribers, the name server), bounded
and strict about what they read.

Pyro4's own thread-pool server gives each connection a pool thread until a long idle
timeout and refuses new ones when the pool is full, so a few hundred silent connections
lock every client out; and its daemon decompresses any compressed message (a 509 KB zlib
bomb grows a process by gigabytes) and ``marshal.loads`` the arguments of a message
flagged keep-serialized, whatever serializer it names. Here each daemon's connections
are kept by a :class:`~middlewares.direct.connections.ConnectionTable` (a cap, a short
wait for each request, the longest-idle connection closed to make room), and the header
of every message is read and checked before the daemon reads it: one too large, or
compressed, or carries any flag but oneway (and, on a handshake, metadata) is refused
with a clear error, before anything of it is decompressed or deserialized.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from typing import Any

import Pyro4
import Pyro4.constants
import Pyro4.errors
import Pyro4.naming
import Pyro4.util
from Pyro4 import message
from Pyro4.configuration import config
from Pyro4.socketserver.threadpoolserver import SocketServer_Threadpool
from Pyro4.socketutil import SocketConnection, receiveData

from middlewares.direct.checks import MAX_MESSAGE_BYTES
from middlewares.direct.connections import IDLE_TIMEOUT, ConnectionTable, ServerBusy
from middlewares.secret import is_secret

log = logging.getLogger(__name__)

#: Message flags a client may set: a oneway call, and metadata with the handshake.
ALLOWED_FLAGS = message.FLAGS_ONEWAY | message.FLAGS_META_ON_CONNECT

#: The annotation (four letters, as Pyro4 wants) carrying the deployment secret with
#: the name-server calls that change a registration.
SECRET_ANNOTATION = "IBSC"

_SERPENT = Pyro4.util.get_serializer("serpent")


def header_fields(header: bytes) -> tuple[int, int] | None:
    """The flags of a message and the size after its header (annotations and data), or
    None when it is not a Pyro4 header of this protocol version (Pyro4 answers that
    itself)."""
    tag, version, _, flags, _, data_size, _, annotations_size, _, _ = struct.unpack(
        message.Message.header_format, header
    )
    if tag != b"PYRO" or version != Pyro4.constants.PROTOCOL_VERSION:
        return None
    return flags, data_size + annotations_size


def refusal(flags: int, size: int, max_bytes: int) -> str | None:
    """Why a Pyro4 message with these flags and size is refused, or None."""
    if size > max_bytes:
        return f"messages are limited to {max_bytes} bytes, this one has {size}"
    if flags & message.FLAGS_COMPRESSED:
        return "compressed messages are refused; send them uncompressed (COMPRESSION off)"
    if flags & ~ALLOWED_FLAGS:
        return f"message flags {flags:#x} are refused: only oneway calls are accepted"
    return None


class BoundedServer(SocketServer_Threadpool):
    """Pyro4's thread-pool socket server with a thread per connection kept by a
    :class:`ConnectionTable`, and every message header checked by :func:`refusal`.

    Installed by :func:`bound` on a daemon that Pyro4 has just built (and bound) with
    its own server: the daemon then keeps its listening socket and its housekeeping.
    """

    table: ConnectionTable
    max_request_bytes: int

    def events(self, eventsockets: Any) -> None:
        """Accept one connection and serve it on a thread of its own."""
        if self._selector and not self._selector.select(config.POLLTIMEOUT):
            return
        try:
            sock, address = self.sock.accept()
        except TimeoutError:
            return
        if self.shutting_down:
            sock.close()
            return
        sock.settimeout(IDLE_TIMEOUT)
        try:
            self.table.admit(sock)
        except ServerBusy as busy:
            log.warning("refused a connection from %s: %s", address, busy)
            sock.close()
            return
        threading.Thread(
            target=self._serve, args=[sock], name="pyro-connection", daemon=True
        ).start()

    def close(self) -> None:
        """Stop accepting, and end every open connection, as a stopping daemon should."""
        super().close()
        for sock in self.table.connections():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _serve(self, sock: socket.socket) -> None:
        connection = _Connection(sock)
        try:
            self._serve_messages(connection)
        except (OSError, Pyro4.errors.CommunicationError, Pyro4.errors.SecurityError) as error:
            # Evicted (an OSError) included: closed to make room, nothing of its call ran.
            log.debug("connection ended: %s", error)
        except Exception:
            log.exception("a Pyro4 connection failed")
        finally:
            self.table.remove(sock)
            with contextlib.suppress(Exception):
                self.daemon._clientDisconnect(connection)
            connection.close()

    def _serve_messages(self, connection: _Connection) -> None:
        handshaken = False
        while (header := connection.read_header()) is not None:
            fields = header_fields(header)
            # Not Pyro4 (None): the daemon answers with an error, reading no more.
            flags, size = fields or (0, 0)
            problem = refusal(flags, size, self.max_request_bytes)
            if problem is not None:
                self._refuse(connection, problem, readable=size <= self.max_request_bytes)
                return
            try:
                self.table.reserve(size)
            except ServerBusy as busy:
                # Reading it to answer would hold what the budget refuses to hold.
                self._refuse(connection, f"{busy}; retry later", readable=False)
                return
            try:
                if not self._handle(connection, handshaken):
                    return
            finally:
                self.table.release(size)
            handshaken = True

    def _handle(self, connection: _Connection, handshaken: bool) -> bool:
        """Let the daemon read and run one message (the handshake first), the connection
        busy meanwhile; False when the handshake failed."""
        self.table.begin(connection.sock)
        try:
            if not handshaken:
                return self.daemon._handshake(connection)
            self.daemon.handleRequest(connection)
            return True
        finally:
            self.table.end(connection.sock)

    def _refuse(self, connection: _Connection, reason: str, readable: bool) -> None:
        """Answer the refused message with ``reason`` and let the connection close; a
        ``readable`` one (within the limits) is read first, never decompressed or
        deserialized, so that the answer can carry its sequence number; another is only
        closed on, as Pyro4 itself does with a message too large."""
        log.warning("refused a Pyro4 message: %s", reason)
        if not readable:
            return
        with contextlib.suppress(Exception):
            refused = message.Message.recv(connection, hmac_key=None)
            if refused.type == message.MSG_CONNECT:
                data, _ = _SERPENT.serializeData(reason, compress=False)
                reply = message.Message(
                    message.MSG_CONNECTFAIL, data, _SERPENT.serializer_id, 0, refused.seq
                )
                connection.send(reply.to_bytes())
            else:
                self.daemon._sendExceptionResponse(
                    connection,
                    refused.seq,
                    _SERPENT.serializer_id,
                    Pyro4.errors.ProtocolError(reason),
                    None,
                )


class _Connection(SocketConnection):
    """A client connection whose next message header is read (and checked) before the
    daemon reads the message: its next ``recv`` of a header returns that header."""

    header = b""

    def read_header(self) -> bytes | None:
        """Read the next message's header; None when the connection closed, was closed
        to make room, or stayed silent too long."""
        try:
            self.header = receiveData(self.sock, message.Message.header_size)
        except (OSError, Pyro4.errors.CommunicationError):
            return None
        return self.header

    def recv(self, size: int) -> bytes:
        """The header read already, then what the socket brings."""
        if self.header:
            held, self.header = self.header, b""
            if len(held) != size:
                raise Pyro4.errors.ProtocolError("a message header was read in pieces")
            return held
        return super().recv(size)


def bound(daemon: Pyro4.Daemon, max_request_bytes: int = MAX_MESSAGE_BYTES) -> None:
    """Serve ``daemon``'s connections with a :class:`BoundedServer` from now on."""
    server = daemon.transportServer
    server.__class__ = BoundedServer  # keeps its bound socket and housekeeper
    server.table = ConnectionTable()
    server.max_request_bytes = max_request_bytes


def bounded_daemon(
    host: str, max_request_bytes: int = MAX_MESSAGE_BYTES, advertise: str | None = None
) -> Pyro4.Daemon:
    """A daemon on a free port of ``host``, bounded as this module says, whose URIs
    name ``advertise`` (default: ``host``) and the same port."""
    if advertise and advertise != host:
        daemon = Pyro4.Daemon(host=host, port=0, nathost=advertise, natport=0)
    else:
        daemon = Pyro4.Daemon(host=host, port=0)
    bound(daemon, max_request_bytes)
    return daemon


@Pyro4.expose
class GuardedNameServer(Pyro4.naming.NameServer):
    """Pyro4's name server object, whose registrations only the deployment can change:
    ``register``, ``set_metadata`` and ``remove`` need the deployment secret in the
    :data:`SECRET_ANNOTATION` annotation of the call; lookups and listings are open."""

    def __init__(self, storage: Any, secret: str) -> None:
        super().__init__(storage)
        self._secret = secret

    def register(self, name: Any, uri: Any, safe: bool = False, metadata: Any = None) -> None:
        """Register ``name`` (the deployment only)."""
        self._authorize()
        super().register(name, uri, safe, metadata)

    def set_metadata(self, name: Any, metadata: Any) -> None:
        """Change the metadata of ``name`` (the deployment only)."""
        self._authorize()
        super().set_metadata(name, metadata)

    def remove(self, name: Any = None, prefix: Any = None, regex: Any = None) -> int:
        """Remove registrations (the deployment only)."""
        self._authorize()
        return super().remove(name, prefix, regex)

    def _authorize(self) -> None:
        given = Pyro4.current_context.annotations.get(SECRET_ANNOTATION, b"")
        if not is_secret(bytes(given).decode("ascii", "replace"), self._secret):
            raise Pyro4.errors.NamingError(
                "only the processes of this deployment (holding its secret) may register "
                "or remove names"
            )


class BoundedNameServerDaemon(Pyro4.naming.NameServerDaemon):
    """Pyro4's name server daemon, bounded as this module says, whose name server is a
    :class:`GuardedNameServer` checking ``secret``."""

    def __init__(self, host: str, port: int, secret: str) -> None:
        super().__init__(host, port)
        guarded = GuardedNameServer(self.nameserver.storage, secret)
        self.unregister(Pyro4.constants.NAMESERVER_NAME)
        self.register(guarded, Pyro4.constants.NAMESERVER_NAME)
        self.nameserver = guarded
        bound(self)


class SecretProxy(Pyro4.Proxy):
    """A proxy that sends ``secret`` with every call, in :data:`SECRET_ANNOTATION`."""

    def __init__(self, uri: Any, secret: str) -> None:
        super().__init__(uri)
        # Set past Proxy.__setattr__, which would look for a remote attribute.
        object.__setattr__(self, "_secret_bytes", secret.encode())

    def _pyroAnnotations(self) -> dict[str, bytes]:
        return {SECRET_ANNOTATION: self._secret_bytes}
