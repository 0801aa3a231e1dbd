"""The connections of a direct server (XML-RPC, Pyro4), bounded so that one local client
cannot lock the others out: a cap, a short wait for each request, and a budget of
request bytes in memory.

A server keeps a thread per connection. Without bounds, a few hundred connections that
stay silent (or send half a request) hold every place until a long idle timeout, and a
few hundred big requests read at once hold gigabytes. A :class:`ConnectionTable` tells
a server which connection to close instead:

- a connection is *waiting* from its accept, or the end of its last reply, until its
  next request has been read in full, and *busy* while that request runs and its reply
  is written;
- one waiting longer than :data:`IDLE_TIMEOUT` is closed (its client reconnects: every
  client of this project does, and HTTP/1.1 and Pyro4 allow a server to close an idle
  connection), so idle and half-sent connections go in seconds;
- when the table is full, a new connection takes the place of the one that has waited
  longest, so a new client is served at once whatever the idle ones do; only when every
  place is busy running a call is the new one refused;
- the requests being read and run at once hold at most :data:`MAX_BYTES_IN_FLIGHT`
  bytes (besides small ones); one more is refused as busy (retry later).

A busy connection is never closed, so a call that runs always gets its reply.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import OrderedDict

#: Seconds a connection may wait for its next request to arrive in full.
IDLE_TIMEOUT = 10.0

#: Most connections a server keeps at once (a thread each).
MAX_CONNECTIONS = 512

#: Most bytes of requests a server holds at once, read or being read.
MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024

#: Requests smaller than this are not counted against MAX_BYTES_IN_FLIGHT.
SMALL_REQUEST = 64 * 1024


class ServerBusy(Exception):
    """Every place is busy running a call, or the requests in memory fill the budget."""


class Evicted(ConnectionAbortedError):
    """This connection was closed to make room (or for waiting too long): drop its request."""


class ConnectionTable:
    """The open connections of one server and what each is doing; thread-safe."""

    def __init__(
        self,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
        max_bytes: int = MAX_BYTES_IN_FLIGHT,
    ) -> None:
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        # Waiting connections -> since when, oldest first.
        self._waiting: OrderedDict[socket.socket, float] = OrderedDict()
        self._busy: set[socket.socket] = set()
        self._bytes = 0

    def admit(self, connection: socket.socket) -> None:
        """Take a new connection, closing those that waited too long and, when the table
        is full, the one that has waited longest. Raises :class:`ServerBusy` when every
        place is busy running a call."""
        with self._lock:
            closing = self._stale()
            if len(self._waiting) + len(self._busy) >= self._max_connections and self._waiting:
                closing.append(self._waiting.popitem(last=False)[0])
            full = len(self._waiting) + len(self._busy) >= self._max_connections
            if not full:
                self._waiting[connection] = time.monotonic()
        _close_all(closing)
        if full:
            raise ServerBusy(f"all {self._max_connections} connections are running calls")

    def reserve(self, size: int) -> None:
        """Count ``size`` bytes of a request about to be read against the budget, until
        :meth:`release`. Raises :class:`ServerBusy` when the budget is spent, even after
        closing the connections that waited too long (a slow sender holds budget too).
        Requests under :data:`SMALL_REQUEST` bytes are not counted: a full table of them
        holds little."""
        if size < SMALL_REQUEST:
            return
        with self._lock:
            fits = self._fits(size)
            closing = [] if fits else self._stale()
        if not fits:
            _close_all(closing)
            with self._lock:
                fits = self._fits(size)
        if not fits:
            raise ServerBusy(f"requests of {self._max_bytes} bytes are in memory already")

    def release(self, size: int) -> None:
        """Give back what :meth:`reserve` counted."""
        if size >= SMALL_REQUEST:
            with self._lock:
                self._bytes -= size

    def _fits(self, size: int) -> bool:
        # One request always fits when no other is in memory: the size limit is the
        # server's, the budget only bounds how many are read at once.
        if self._bytes and self._bytes + size > self._max_bytes:
            return False
        self._bytes += size
        return True

    def begin(self, connection: socket.socket) -> None:
        """``connection`` is busy from now on: its request runs and its reply is written,
        until :meth:`end`. Raises :class:`Evicted` when it was closed meanwhile: the
        request must not run, as its reply could not be written."""
        with self._lock:
            if self._waiting.pop(connection, None) is None:
                raise Evicted("the connection was closed to make room for another")
            self._busy.add(connection)

    def end(self, connection: socket.socket) -> None:
        """The reply is written: ``connection`` waits for its next request."""
        with self._lock:
            if connection in self._busy:
                self._busy.discard(connection)
                self._waiting[connection] = time.monotonic()

    def remove(self, connection: socket.socket) -> None:
        """Forget a connection that has closed."""
        with self._lock:
            self._waiting.pop(connection, None)
            self._busy.discard(connection)

    def connections(self) -> list[socket.socket]:
        """Every connection open now."""
        with self._lock:
            return [*self._waiting, *self._busy]

    def _stale(self) -> list[socket.socket]:
        """Remove and return the connections that waited too long (lock held)."""
        cutoff = time.monotonic() - self._idle_timeout
        stale = []
        while self._waiting:
            oldest, since = next(iter(self._waiting.items()))
            if since >= cutoff:
                break
            del self._waiting[oldest]
            stale.append(oldest)
        return stale


def _close_all(connections: list[socket.socket]) -> None:
    """Wake the threads of ``connections`` with an end of stream; each closes its own."""
    for connection in connections:
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)
