"""A node's requests in flight, so a stopping node refuses new calls and finishes the
ones it accepted.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from middlewares.contract import MiddlewareError

log = logging.getLogger(__name__)


class NodeLeaving(MiddlewareError):
    """Raised by :meth:`RequestGate.admit` on a node that is stopping.

    The request was not executed, so a client may always retry it on another node; each
    transport sends it as an error its clients recognize as "node unavailable".
    """


class RequestGate:
    """The requests a node is executing, so it can stop without dropping any.

    Every remote method runs inside :meth:`admit`; :meth:`close` refuses new requests
    and waits for those in flight. ``served``, if given, runs after each request (a
    node's :class:`~middlewares.cluster.counters.NodeCounters`).
    """

    def __init__(self, served: Callable[[], None] | None = None) -> None:
        self._served = served
        self._in_flight = 0
        self._closed = False
        self._idle = threading.Condition()

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Run one request, or raise :class:`NodeLeaving` when the node is stopping."""
        with self._idle:
            if self._closed:
                raise NodeLeaving("this node is leaving the deployment; call another node")
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                if not self._in_flight:
                    self._idle.notify_all()
            if self._served is not None:
                self._served()

    def close(self, timeout: float) -> int:
        """Refuse new requests, wait up to ``timeout`` for the others; returns how many
        were still running."""
        with self._idle:
            self._closed = True
            self._idle.wait_for(lambda: not self._in_flight, timeout)
            if self._in_flight:
                log.warning("stopping with %d requests still running", self._in_flight)
            return self._in_flight
