"""The master's side of the direct middlewares' n-node form: which nodes live.

Nodes ``register(node_id, secret, address)`` with the master's :class:`NodeDirectory`
and ``heartbeat(node_id, secret)`` every :data:`NODE_HEARTBEAT` seconds (a node silent
for :data:`MISSED_HEARTBEATS` is dropped) and ``deregister`` when they stop; only a
process holding the deployment secret can do any of that. Clients ask ``nodes()`` for
the live addresses, in an order rotated on every call.
:class:`NodeMembership` is the node's side of that. :class:`StartupBarrier` holds a
starting deployment's work back until its nodes have arrived.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable

from middlewares.contract import MiddlewareError
from middlewares.direct.checks import check_id, check_secret
from middlewares.direct.transport import Link

log = logging.getLogger(__name__)

#: Seconds between two heartbeats of a node to its master.
NODE_HEARTBEAT = 1.0

#: Heartbeats a node may miss before the master drops it.
MISSED_HEARTBEATS = 3

#: Longest a call to the master may take (its calls are tiny).
MASTER_TIMEOUT = 2.0

#: Longest a starting coordinator holds work back waiting for the nodes it expects.
STARTUP_GRACE = 15.0


class StartupBarrier:
    """Holds a deployment's work back until its nodes have arrived, or a grace period passed.

    A coordinator that hands work to the first node that shows up would give it all the
    work of a benchmark's first second while the others still start, so the load would
    not spread. With ``expected`` nodes it opens once that many distinct ids arrived, or
    after ``grace`` seconds (so a node that never starts delays, never stops, the
    deployment). ``expected=0`` is always open; once open it stays open.
    """

    def __init__(self, expected: int = 0, grace: float = 15.0) -> None:
        self._expected = expected
        self._opens_at = time.monotonic() + grace
        self._arrived: set[str] = set()
        self._open = expected <= 0
        self._lock = threading.Lock()

    def arrive(self, member: str) -> bool:
        """Count ``member`` (again, harmlessly); True when the barrier is open."""
        with self._lock:
            if not self._open:
                self._arrived.add(member)
            return self._check()

    def is_open(self) -> bool:
        """True once enough members arrived or the grace period is over."""
        with self._lock:
            return self._check()

    def _check(self) -> bool:
        if not self._open and (
            len(self._arrived) >= self._expected or time.monotonic() >= self._opens_at
        ):
            self._open = True
            log.info(
                "startup barrier open: %d of %d expected nodes arrived",
                len(self._arrived),
                self._expected,
            )
            self._arrived.clear()
        return self._open


class NodeRegistry:
    """Live nodes of a direct-middleware deployment, kept by its master.

    A node registers with its address and then heartbeats every ``heartbeat`` seconds;
    one silent for ``missed`` heartbeats is dropped. :meth:`nodes` lists the live ones in
    a rotating order, so clients that take the first spread over all nodes (round-robin).
    """

    def __init__(self, heartbeat: float = 1.0, missed: int = 3) -> None:
        self._expiry = heartbeat * missed
        self._last_seen: dict[str, float] = {}
        self._addresses: dict[str, str] = {}
        self._lock = threading.Lock()
        self._rotation = itertools.count()

    def register(self, node: str, address: str) -> None:
        """Add a node (or move it to a new address after a restart)."""
        with self._lock:
            self._addresses[node] = address
            self._last_seen[node] = time.monotonic()
        log.info("node %s registered at %s", node, address)

    def heartbeat(self, node: str) -> bool:
        """Mark a node alive; False if it is unknown (dropped), so it must register again."""
        with self._lock:
            self._expire()
            if node not in self._addresses:
                return False
            self._last_seen[node] = time.monotonic()
            return True

    def remove(self, node: str) -> bool:
        """Drop a node at once (a graceful stop); False if it was not registered."""
        with self._lock:
            self._last_seen.pop(node, None)
            return self._addresses.pop(node, None) is not None

    def nodes(self) -> list[str]:
        """Addresses of the live nodes, rotated by one on every call."""
        with self._lock:
            self._expire()
            addresses = [self._addresses[node] for node in sorted(self._addresses)]
        if not addresses:
            return []
        shift = next(self._rotation) % len(addresses)
        return addresses[shift:] + addresses[:shift]

    def _expire(self) -> None:
        deadline = time.monotonic() - self._expiry
        for node in [n for n, seen in self._last_seen.items() if seen < deadline]:
            log.warning("node %s missed its heartbeats; dropping it", node)
            del self._last_seen[node]
            del self._addresses[node]


class NodeDirectory:
    """The master's remote API, for a transport to expose method by method.

    Arguments are checked here (``ValueError`` names the problem, ``PermissionError`` a
    node call without the deployment ``secret``); ``check_address`` is the transport's
    check of a node address (a ``PYRO:`` URI, an ``http://`` URL).
    With ``expected_nodes`` (a deployment starting N nodes), ``nodes()`` lists none
    until N have registered or :data:`STARTUP_GRACE` passed, so the deployment becomes
    ready with all its nodes and the first client spreads over all of them.
    """

    def __init__(
        self, check_address: Callable[[object], str], secret: str, expected_nodes: int = 0
    ) -> None:
        self._check_address = check_address
        self._secret = secret
        self._registry = NodeRegistry(NODE_HEARTBEAT, MISSED_HEARTBEATS)
        self._barrier = StartupBarrier(expected_nodes, STARTUP_GRACE)

    def register(self, node_id: object, secret: object, address: object) -> float:
        """A node starts (or restarts, at a new address); returns the heartbeat interval."""
        node = self._node(node_id, secret)
        self._registry.register(node, self._check_address(address))
        self._barrier.arrive(node)
        return NODE_HEARTBEAT

    def heartbeat(self, node_id: object, secret: object) -> bool:
        """A node lives; False if the master does not know it (it must register again)."""
        return self._registry.heartbeat(self._node(node_id, secret))

    def deregister(self, node_id: object, secret: object) -> bool:
        """A node stops gracefully; False if it was not registered."""
        return self._registry.remove(self._node(node_id, secret))

    def _node(self, node_id: object, secret: object) -> str:
        check_secret(secret, self._secret)
        return check_id(node_id, "node id")

    def nodes(self) -> list[str]:
        """Addresses of the live nodes, rotated on every call ([] while starting)."""
        return self._registry.nodes() if self._barrier.is_open() else []

    def wait_until_empty(self, timeout: float) -> None:
        """Wait for the nodes to deregister (a stopping deployment), at most ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._registry.nodes() and time.monotonic() < deadline:
            time.sleep(0.1)


class NodeMembership:
    """A node's membership in its master's :class:`NodeDirectory`, proven by the
    deployment ``secret``.

    While the master is away the node keeps serving (clients keep the node list they
    have); when it comes back (restarted by the launcher, knowing no node) the next
    heartbeat answers False and the node registers again.
    """

    def __init__(self, master: Link, node_id: str, address: str, secret: str) -> None:
        self._master = master
        self._node_id = node_id
        self._address = address
        self._secret = secret
        self._stopped = threading.Event()
        self._beat: threading.Thread | None = None

    def join(self, wait: float, stopping: Callable[[], bool] = lambda: False) -> None:
        """Register, retrying for up to ``wait`` seconds while the master starts, then
        heartbeat on a thread. Raises the master's :class:`MiddlewareError` after that."""
        deadline = time.monotonic() + wait
        while True:
            try:
                interval = float(
                    self._master.call("register", self._node_id, self._secret, self._address)
                )
                break
            except MiddlewareError:
                if time.monotonic() >= deadline or stopping():
                    raise
            time.sleep(0.2)
        log.info("node %s registered at %s", self._node_id, self._address)
        self._beat = threading.Thread(
            target=self._heartbeat, args=[interval], name="node-heartbeat", daemon=True
        )
        self._beat.start()

    def _heartbeat(self, interval: float) -> None:
        master_away = False
        while not self._stopped.wait(interval):
            try:
                if not self._master.call("heartbeat", self._node_id, self._secret):
                    # Dropped (we were too slow) or a new master: register again.
                    self._master.call("register", self._node_id, self._secret, self._address)
                    log.warning("node %s registered again with the master", self._node_id)
                master_away = False
            except MiddlewareError as error:
                if not master_away:  # once, not every second while it is away
                    log.warning("heartbeat to the master failed, still serving: %s", error)
                master_away = True

    def leave(self) -> None:
        """Stop heartbeating and deregister, so clients stop being sent here."""
        self._stopped.set()
        if self._beat is not None:
            self._beat.join()
        try:
            self._master.call("deregister", self._node_id, self._secret)
        except MiddlewareError as error:
            log.info("could not deregister from the master (it may be stopping): %s", error)
