"""A node's requests in flight, so a stopping node refuses new calls and finishes the
ones it accepted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from middlewares.contract import MiddlewareError

log = logging.getLogger(__name__)


class NodeLeaving(MiddlewareError):
    """Raised by :meth:`RequestGate.admit` on a node that is stopping.

    The request was not executed, so a client may always retry it on another node; each
    transport sends it as an error its clients recognize as "node unavailable".
    """


class RequestGate:
    """The requests a node is executing, so it can stop without dropping any.

    Every remote method runs inside ``with gate.admit():``; :meth:`close` refuses new
    requests and waits for those in flight. ``served``, if given, runs after each request
    (a node's :class:`~middlewares.cluster.counters.NodeCounters`).

    The gate is its own context manager, not a generator-based one: it is entered on
    every request of every XML-RPC and Pyro4 InsultService, and a profile showed the
    generator machinery costing more than the counting. For the same reason a request
    takes the plain lock under the condition (a C-level ``with``), not the condition's
    Python-level one. Nobody waits for the count to reach zero before :meth:`close`, so
    only then does leaving a request notify.
    """

    def __init__(self, served: Callable[[], None] | None = None) -> None:
        self._served = served
        self._in_flight = 0
        self._closed = False
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def admit(self) -> RequestGate:
        """Run one request (``with gate.admit():``); entering raises :class:`NodeLeaving`
        when the node is stopping."""
        return self

    def __enter__(self) -> None:
        with self._lock:
            if self._closed:
                raise NodeLeaving("this node is leaving the deployment; call another node")
            self._in_flight += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._closed and not self._in_flight:
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
