"""The client's side of the direct middlewares' n-node form: calls spread round-robin
over the live nodes, and a call whose node cannot be reached retried on another.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from middlewares.contract import BrokerUnavailable, MiddlewareError
from middlewares.direct.directory import MISSED_HEARTBEATS, NODE_HEARTBEAT
from middlewares.direct.transport import Link

log = logging.getLogger(__name__)

#: Seconds between two refreshes of a client's node list.
NODE_REFRESH = 2.0

#: A node a client could not reach is tried last for this long: by then the master has
#: dropped it (or its restart has registered a new address) and the client has seen that.
QUARANTINE = NODE_HEARTBEAT * MISSED_HEARTBEATS + NODE_REFRESH

#: Pause before a client asks the master again when no node was reachable.
_RETRY_PAUSE = 0.1


Result = TypeVar("Result")


class NodePool:
    """A client's links to the nodes of a service, used round-robin.

    ``resolve()`` lists the node addresses (the master's ``nodes()``, or one fixed
    address for the one-node form); ``connect(address)`` makes a :class:`Link` to one.
    Successive calls go to successive nodes, so even one client spreads its load. The
    list is refreshed every :data:`NODE_REFRESH` seconds, so joined nodes get traffic.

    With ``failover``, a call whose node cannot be reached (:class:`BrokerUnavailable`)
    is retried on another node, asking the master again, until ``timeout`` seconds have
    passed; that node is tried last for :data:`QUARANTINE` seconds. A call that reached
    its node and failed there (a refusal, a timeout) is not retried. Retrying is safe
    for every InsultService call: reads have no effect, and a retried ``add_insult``
    whose first attempt was applied just before its node died finds the insult stored
    (SADD), so it returns False although the insult was new to the store. Without
    ``failover`` (one fixed node) errors are raised as they come.
    """

    def __init__(
        self,
        resolve: Callable[[], list[str]],
        connect: Callable[[str], Link],
        timeout: float,
        where: str,
        failover: bool = True,
    ) -> None:
        self._resolve = resolve
        self._connect = connect
        self._timeout = timeout
        self._where = where
        self._failover = failover
        self._lock = threading.Lock()
        self._addresses: list[str] = []
        self._links: dict[str, Link] = {}
        self._failed_at: dict[str, float] = {}
        self._turn = 0
        self._next_refresh = 0.0
        self._resolve_error: MiddlewareError | None = None

    def connect(self) -> None:
        """Find the nodes and connect to one now, so a missing service is reported at once."""
        self._attempt(lambda link: link.connect())

    def call(self, method: str, *args: Any, wait: float = 0.0) -> Any:
        """Call ``method(*args)`` on the next node (see the class for retries)."""
        return self._attempt(lambda link: link.call(method, *args, wait=wait))

    def local_address(self) -> str:
        """The local address of a connection to a node: where the nodes can reach us."""
        return self._attempt(lambda link: link.local_address())

    def addresses(self) -> list[str]:
        """The node addresses this client knows now."""
        with self._lock:
            return list(self._addresses)

    def close(self) -> None:
        """Close every link. Safe to call twice."""
        with self._lock:
            links, self._links = list(self._links.values()), {}
        for link in links:
            link.close()

    def _attempt(self, operation: Callable[[Link], Result]) -> Result:
        deadline = time.monotonic() + self._timeout
        tried: set[str] = set()
        last_error: MiddlewareError | None = None
        ask_master = False
        while True:
            self._refresh(force=ask_master)
            chosen = self._choose(tried)
            if chosen is None:
                if not self._failover or time.monotonic() >= deadline:
                    raise last_error or self._resolve_error or BrokerUnavailable(
                        self._where, "it lists no live node; start one with `join`"
                    )
                # Every node known failed during this call: wait for the master to
                # list a replacement (a restarted node registers at a new address).
                time.sleep(_RETRY_PAUSE)
                tried.clear()
                ask_master = True
                continue
            address, link = chosen
            try:
                return operation(link)
            except BrokerUnavailable as error:
                if not self._failover:
                    raise
                log.info("node %s unreachable, trying another: %s", address, error)
                last_error = error
                tried.add(address)
                self._forget(address)
                ask_master = True  # it may list a replacement already

    def _refresh(self, force: bool) -> None:
        if not force and time.monotonic() < self._next_refresh:
            return
        self._next_refresh = time.monotonic() + NODE_REFRESH
        try:
            addresses = [str(address) for address in self._resolve()]
        except MiddlewareError as error:
            # Keep serving with the nodes known: the master is only needed to change them.
            log.debug("could not refresh the node list from %s: %s", self._where, error)
            self._resolve_error = error
            return
        self._resolve_error = None
        if not addresses and self._addresses:
            # A master that has just restarted lists nobody until its nodes register
            # again (about a heartbeat): keep calling the nodes known meanwhile.
            return
        with self._lock:
            gone = [self._links.pop(a) for a in list(self._links) if a not in addresses]
            self._addresses = addresses
            for address in [a for a in self._failed_at if a not in addresses]:
                del self._failed_at[address]
        for link in gone:
            link.close()

    def _choose(self, tried: set[str]) -> tuple[str, Link] | None:
        """The next node in turn, preferring ones not failed lately; None if all tried."""
        now = time.monotonic()
        with self._lock:
            candidates = [a for a in self._addresses if a not in tried]
            if not candidates:
                return None
            healthy = [
                a for a in candidates if now - self._failed_at.get(a, -QUARANTINE) >= QUARANTINE
            ]
            usable = set(healthy or candidates)
            count = len(self._addresses)
            for step in range(count):
                address = self._addresses[(self._turn + step) % count]
                if address in usable:
                    self._turn = (self._turn + step + 1) % count
                    break
            link = self._links.get(address)
            if link is None:
                link = self._links[address] = self._connect(address)
            return address, link

    def _forget(self, address: str) -> None:
        with self._lock:
            self._failed_at[address] = time.monotonic()
            link = self._links.pop(address, None)
        if link is not None:
            link.close()
