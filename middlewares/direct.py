"""What the direct middlewares (XML-RPC, Pyro4) share, without any transport: chiefly
their n-node form, and the InsultService client and process lists of both forms.

In the direct middlewares a client talks to a node itself, so something must say which
nodes live. For the InsultService that is a *master* process; the pieces here are its
three roles and the shared state around them. A transport only moves the calls:

- :class:`NodeDirectory`: the master's remote API. Nodes ``register(node_id, address)``
  and ``heartbeat(node_id)`` every :data:`NODE_HEARTBEAT` seconds (a node silent for
  :data:`MISSED_HEARTBEATS` is dropped) and ``deregister`` when they stop; clients ask
  ``nodes()`` for the live addresses, in an order rotated on every call.
- :class:`NodeMembership`: the node's side of that: register, heartbeat on a thread,
  register again when the master has forgotten it, deregister on a graceful stop.
- :class:`RequestGate`: a node's requests in flight, so a stopping node refuses new
  calls (:class:`NodeLeaving`, which a client retries on another node: it was surely
  not applied) and finishes the ones it accepted before its server goes.
- :class:`NodePool`: the client's side: one link per node, calls spread round-robin,
  a call that cannot reach its node retried on another, the list refreshed from the
  master every :data:`NODE_REFRESH` seconds so a joined node gets traffic.
- :class:`RedisSubscriberRegistry`: the subscribers of every node in one Redis hash, so
  whichever node holds the broadcast lease notifies them all.
- :class:`DirectInsultClient` and :class:`Subscription`: the InsultService client of
  both direct middlewares, in either form; a transport adds how it reaches the nodes and
  the server in the client process that receives ``notify(insult)``.
- :class:`Notifier` and :func:`insult_node`: the service side of broadcasts, and what
  an InsultService node holds and does from joining the master to leaving it.
- :class:`DirectBackend`: which processes make up each service, in either form.

The InsultFilter needs little of this: its front is the coordinator (a master-held queue
that worker nodes pull from, :mod:`middlewares.workqueue`), and a node is a worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import redis

from middlewares.cluster import (
    LeasedBroadcaster,
    NodeCounters,
    NodeRegistry,
    RedisInsultStore,
    RestartSafeLease,
    StartupBarrier,
    counters_key,
    lease_key,
    redis_client,
    store_key,
)
from middlewares.contract import (
    Backend,
    BroadcastCallback,
    BrokerUnavailable,
    InsultClient,
    MiddlewareError,
    ProcessSpec,
)
from middlewares.core import load_default_insults
from middlewares.runtime import StopSignal
from middlewares.service import SubscriberSet
from middlewares.settings import Settings
from middlewares.workqueue import STARTUP_GRACE, check_id

log = logging.getLogger(__name__)

#: Longest a subscriber may take to acknowledge one broadcast before it counts as failed.
NOTIFY_TIMEOUT = 2.0
#: Seconds between two heartbeats of a node to its master.
NODE_HEARTBEAT = 1.0
#: Heartbeats a node may miss before the master drops it.
MISSED_HEARTBEATS = 3
#: Seconds between two refreshes of a client's node list.
NODE_REFRESH = 2.0
#: A node a client could not reach is tried last for this long: by then the master has
#: dropped it (or its restart has registered a new address) and the client has seen that.
QUARANTINE = NODE_HEARTBEAT * MISSED_HEARTBEATS + NODE_REFRESH
#: Pause before a client asks the master again when no node was reachable.
_RETRY_PAUSE = 0.1
#: Longest a call to the master may take (its calls are tiny).
MASTER_TIMEOUT = 2.0


def subscribers_key(namespace: str) -> str:
    """The Redis hash of subscriber address -> consecutive failed broadcasts."""
    return f"{namespace}:insults:subscribers"


# -- the master ------------------------------------------------------------------------


class NodeDirectory:
    """The master's remote API, for a transport to expose method by method.

    Arguments are checked here (``ValueError`` names the problem); ``check_address``
    is the transport's check of a node address (a ``PYRO:`` URI, an ``http://`` URL).
    With ``expected_nodes`` (a deployment starting N nodes), ``nodes()`` lists none
    until N have registered or :data:`STARTUP_GRACE` passed, so the deployment becomes
    ready with all its nodes and the first client spreads over all of them.
    """

    def __init__(self, check_address: Callable[[object], str], expected_nodes: int = 0) -> None:
        self._check_address = check_address
        self._registry = NodeRegistry(NODE_HEARTBEAT, MISSED_HEARTBEATS)
        self._barrier = StartupBarrier(expected_nodes, STARTUP_GRACE)

    def register(self, node_id: object, address: object) -> float:
        """A node starts (or restarts, at a new address); returns the heartbeat interval."""
        node = check_id(node_id, "node id")
        self._registry.register(node, self._check_address(address))
        self._barrier.arrive(node)
        return NODE_HEARTBEAT

    def heartbeat(self, node_id: object) -> bool:
        """A node lives; False if the master does not know it (it must register again)."""
        return self._registry.heartbeat(check_id(node_id, "node id"))

    def deregister(self, node_id: object) -> bool:
        """A node stops gracefully; False if it was not registered."""
        return self._registry.remove(check_id(node_id, "node id"))

    def nodes(self) -> list[str]:
        """Addresses of the live nodes, rotated on every call ([] while starting)."""
        return self._registry.nodes() if self._barrier.is_open() else []

    def wait_until_empty(self, timeout: float) -> None:
        """Wait for the nodes to deregister (a stopping deployment), at most ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._registry.nodes() and time.monotonic() < deadline:
            time.sleep(0.1)


# -- a node ----------------------------------------------------------------------------


class Link(Protocol):
    """A persistent connection to one remote object, as each transport's ``Remote`` is.

    Raises :class:`BrokerUnavailable` when the object cannot be reached (or refuses the
    call because it is leaving), ``ServiceError`` when it refuses the request, and
    ``ServiceTimeout`` when it does not answer in time.
    """

    def call(self, method: str, *args: Any, wait: float = 0.0) -> Any:
        """Call ``method(*args)``; ``wait`` is how long the object may block on purpose."""
        ...

    def connect(self) -> None:
        """Connect now, so an unreachable object is reported at once."""
        ...

    def local_address(self) -> str:
        """The local address of the connection: where the remote side can reach us."""
        ...

    def close(self) -> None:
        """Close the connection. Safe to call twice."""
        ...


class NodeMembership:
    """A node's membership in its master's :class:`NodeDirectory`."""

    def __init__(self, master: Link, node_id: str, address: str) -> None:
        self._master = master
        self._node_id = node_id
        self._address = address
        self._stopped = threading.Event()
        self._beat: threading.Thread | None = None

    def join(self, wait: float, stopping: Callable[[], bool] = lambda: False) -> None:
        """Register, retrying for up to ``wait`` seconds while the master starts, then
        heartbeat on a thread. Raises the master's :class:`MiddlewareError` after that."""
        deadline = time.monotonic() + wait
        while True:
            try:
                interval = float(self._master.call("register", self._node_id, self._address))
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
        while not self._stopped.wait(interval):
            try:
                if not self._master.call("heartbeat", self._node_id):
                    # Dropped (we were too slow) or a new master: register again.
                    self._master.call("register", self._node_id, self._address)
                    log.warning("node %s registered again with the master", self._node_id)
            except MiddlewareError as error:
                log.warning("heartbeat to the master failed: %s", error)

    def leave(self) -> None:
        """Stop heartbeating and deregister, so clients stop being sent here."""
        self._stopped.set()
        if self._beat is not None:
            self._beat.join()
        try:
            self._master.call("deregister", self._node_id)
        except MiddlewareError as error:
            log.info("could not deregister from the master (it may be stopping): %s", error)


class NodeLeaving(MiddlewareError):
    """Raised by :meth:`RequestGate.admit` on a node that is stopping.

    The request was not executed, so a client may always retry it on another node; each
    transport sends it as an error its clients recognize as "node unavailable".
    """


class RequestGate:
    """The requests a node is executing, so it can stop without dropping any.

    Every remote method runs inside :meth:`admit`; :meth:`close` refuses new requests
    and waits for those in flight. ``served``, if given, runs after each request (a
    node's :class:`~middlewares.cluster.NodeCounters`).
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


# -- the client ------------------------------------------------------------------------

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


# -- shared state in Redis -------------------------------------------------------------

_RECORD = """
local failures = redis.call('HGET', KEYS[1], ARGV[1])
if not failures then return 0 end
if ARGV[2] == '0' then
    if failures ~= '0' then redis.call('HSET', KEYS[1], ARGV[1], 0) end
    return 0
end
if redis.call('HINCRBY', KEYS[1], ARGV[1], 1) >= tonumber(ARGV[3]) then
    redis.call('HDEL', KEYS[1], ARGV[1])
    return 1
end
return 0
"""


class RedisSubscriberRegistry:
    """The subscribers of every node of a deployment, in the Redis hash
    ``<ns>:insults:subscribers`` (address -> consecutive failed broadcasts).

    A :class:`~middlewares.service.SubscriberRegistry`: a subscriber added through any
    node is notified by whichever node holds the broadcast lease, and its failure count
    survives a change of broadcaster. Counting is one script, so an address removed
    meanwhile never comes back. Addresses are strings.
    """

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self._client = client
        self._key = subscribers_key(namespace)
        self._record = client.register_script(_RECORD)

    def add(self, address: Hashable) -> bool:
        """Subscribe ``address``; False if it already was."""
        return bool(self._client.hsetnx(self._key, str(address), 0))

    def remove(self, address: Hashable) -> bool:
        """Unsubscribe ``address``; False if it was not subscribed."""
        return bool(self._client.hdel(self._key, str(address)))

    def addresses(self) -> list[Hashable]:
        """The current subscribers."""
        return [address.decode() for address in self._client.hkeys(self._key)]

    def record(self, address: Hashable, failed: bool, max_failures: int) -> bool:
        """Count one delivery; True when the subscriber was dropped now."""
        args = [str(address), int(failed), max_failures]
        return bool(self._record(keys=[self._key], args=args))


def delete_shared_state(settings: Settings) -> None:
    """Delete the n-node form's Redis keys of ``settings.namespace``: the store, the
    broadcast lease, the subscribers and the per-node counters. Does nothing when Redis
    does not answer (then there is nothing to clean either)."""
    try:
        client = redis_client(settings.with_changes(timeout=min(settings.timeout, 2.0)))
    except BrokerUnavailable:
        return
    namespace = settings.namespace
    try:
        client.delete(
            store_key(namespace),
            lease_key(namespace),
            subscribers_key(namespace),
            counters_key(namespace, "insult"),
            counters_key(namespace, "filter"),
        )
    except redis.RedisError as error:
        log.warning("could not delete the shared state of %s: %s", namespace, error)
    finally:
        client.close()


class Subscription(ABC):
    """A subscriber in a client process: a server of the transport receiving
    ``notify(insult)``, and a thread running the user's callback.

    ``notify`` only queues, so the service never waits on the callback and a slow
    callback is not mistaken for a dead subscriber. A subclass builds its server, calls
    this ``__init__``, then starts the server, so no notification arrives before the
    queue exists.
    """

    #: Where the service sends notifications (a URL or a Pyro4 URI).
    address: str

    def __init__(self, callback: BroadcastCallback) -> None:
        self._callback = callback
        self._inbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="subscriber-callback", daemon=True
        )
        self._dispatcher.start()

    def notify(self, insult: object) -> bool:
        """Receive one broadcast insult."""
        if not isinstance(insult, str):
            raise ValueError(f"insult must be a string, got {type(insult).__name__}")
        self._inbox.put(insult)
        return True

    def stop(self) -> None:
        """Stop receiving; insults already received are still handed to the callback."""
        self._stop_server()
        self._inbox.put(None)
        if threading.current_thread() is not self._dispatcher:
            self._dispatcher.join()

    @abstractmethod
    def _stop_server(self) -> None:
        """Stop the transport's server."""

    def _dispatch(self) -> None:
        while (insult := self._inbox.get()) is not None:
            try:
                self._callback(insult)
            except Exception:
                log.exception("subscriber callback failed on %r", insult)


class NodeCalls(Protocol):
    """How a client reaches the InsultService: a :class:`NodePool`, or what wraps one."""

    def call(self, method: str, *args: Any) -> Any:
        """Call ``method(*args)`` on the service, or on the next node."""
        ...

    def local_address(self) -> str:
        """The local address of a connection to the service: where it can reach us."""
        ...

    def close(self) -> None:
        """Close every connection."""
        ...


class DirectInsultClient(InsultClient):
    """The InsultService client of XML-RPC and Pyro4, in either form.

    Calls go through ``nodes`` (the one-node service, or the nodes of the n-node form
    round-robin with failover); a transport says in :meth:`_subscription` how it
    serves ``notify`` in this process.
    """

    def __init__(self, nodes: NodeCalls) -> None:
        self._nodes = nodes
        self._subscribed: Subscription | None = None

    def add_insult(self, insult: str) -> bool:
        return self._nodes.call("add_insult", insult)

    def get_insults(self) -> list[str]:
        return self._nodes.call("get_insults")

    def random_insult(self) -> str:
        return self._nodes.call("random_insult")

    def subscribe(self, callback: BroadcastCallback) -> None:
        """Start a local server exposing ``notify`` and register its address with the
        service. Subscribing again replaces the callback."""
        self.unsubscribe()
        # The address this client reaches the service from is one the service can reach.
        subscription = self._subscription(callback, self._nodes.local_address())
        try:
            self._nodes.call("subscribe", subscription.address)
        except BaseException:
            subscription.stop()
            raise
        self._subscribed = subscription

    def unsubscribe(self) -> None:
        """Tell the service, then stop the local server.

        When the service cannot be told, the server stops anyway and the service drops
        the subscriber after three failed broadcasts.
        """
        subscription, self._subscribed = self._subscribed, None
        if subscription is None:
            return
        try:
            self._nodes.call("unsubscribe", subscription.address)
        except MiddlewareError as error:
            log.info("could not unsubscribe %s: %s", subscription.address, error)
        finally:
            subscription.stop()

    def close(self) -> None:
        self.unsubscribe()
        self._nodes.close()

    @abstractmethod
    def _subscription(self, callback: BroadcastCallback, host: str) -> Subscription:
        """A started subscriber server on ``host`` handing insults to ``callback``."""


class Notifier:
    """The ``notify`` of a :class:`~middlewares.service.SubscriberSet`: one kept
    connection per subscriber, made by ``connect(address, timeout)``.

    The set never notifies one subscriber from two threads at once, so a connection is
    never shared.
    """

    def __init__(self, settings: Settings, connect: Callable[[str, float], Link]) -> None:
        self._connect = connect
        self._timeout = min(settings.timeout, NOTIFY_TIMEOUT)
        self._links: dict[str, Link] = {}
        self._lock = threading.Lock()

    def notify(self, address: Hashable, insult: str) -> None:
        """Deliver one broadcast; raises when the subscriber does not acknowledge it."""
        key = str(address)
        with self._lock:
            link = self._links.get(key)
            if link is None:
                link = self._links[key] = self._connect(key, self._timeout)
        link.call("notify", insult)

    def broadcast_to(self, subscribers: SubscriberSet) -> Callable[[str], None]:
        """The ``send`` of a broadcaster: one round of notifications to ``subscribers``."""

        def send(insult: str) -> None:
            self._forget_all_but(subscribers.addresses())
            subscribers.broadcast(insult)

        return send

    def _forget_all_but(self, addresses: list[Hashable]) -> None:
        """Drop the connections of subscribers no longer subscribed.

        Not closed here: one may still be in a hung call, which ends at its timeout; the
        socket closes when its last reference goes.
        """
        live = {str(address) for address in addresses}
        with self._lock:
            for key in [key for key in self._links if key not in live]:
                del self._links[key]


@dataclass(frozen=True)
class InsultNode:
    """What an InsultService node of the n-node form holds: the shared store, the
    shared subscribers, its request gate (which counts what it serves) and its leased
    broadcaster."""

    node: str
    store: RedisInsultStore
    subscribers: SubscriberSet
    gate: RequestGate
    broadcaster: LeasedBroadcaster

    def serve(
        self, membership: NodeMembership, join_wait: float, stop: StopSignal, timeout: float
    ) -> None:
        """Join the master, broadcast while the lease is ours, and on ``stop`` leave
        gracefully: clients are sent elsewhere first, the broadcast lease is handed over
        (another node broadcasts at once), then the calls this node accepted are
        answered and later ones refused (their clients retry them on another node)."""
        try:
            membership.join(join_wait, stopping=stop.is_set)
        except MiddlewareError:
            if stop.is_set():
                return  # stopped before it ever served: a clean exit
            raise
        self.broadcaster.start()
        stop.wait()
        membership.leave()
        self.broadcaster.stop()
        self.gate.close(timeout)


@contextlib.contextmanager
def insult_node(settings: Settings, node: str, notifier: Notifier) -> Iterator[InsultNode]:
    """The shared state of InsultService node ``node``, in Redis, closed on exit."""
    namespace = settings.namespace
    interval = settings.broadcast_interval
    with contextlib.closing(redis_client(settings)) as client:
        store = RedisInsultStore(client, namespace, settings.limits)
        if settings.load_defaults:
            store.add_all(load_default_insults())
        counters = NodeCounters(client, namespace, "insult", node, resume=True)
        subscribers = SubscriberSet(
            notifier.notify,
            # A round must not hold the broadcaster past its next lease renewal; a slow
            # subscriber still has NOTIFY_TIMEOUT, on its pool thread.
            round_timeout=min(NOTIFY_TIMEOUT, interval / 4),
            registry=RedisSubscriberRegistry(client, namespace),
        )
        try:
            lease = RestartSafeLease(client, namespace, node, LeasedBroadcaster.lease_ttl(interval))
            yield InsultNode(
                node=node,
                store=store,
                subscribers=subscribers,
                gate=RequestGate(counters.increment),
                broadcaster=LeasedBroadcaster(
                    lease, interval, store.random, notifier.broadcast_to(subscribers)
                ),
            )
        finally:
            subscribers.close()
            counters.close()


#: The services of a direct middleware, and those with an n-node form.
SERVICES = ("insult", "filter", "echo")
NODE_SERVICES = ("insult", "filter")
#: The coordinator's flag saying how many nodes a starting deployment waits for.
EXPECT_FLAGS = {"insult": "--expect-nodes", "filter": "--expect-workers"}


class DirectBackend(Backend):
    """The processes of the XML-RPC and Pyro4 services: ``<package>.<service>_service``
    (the filter's front, with ``workers`` pull workers) in the one-node form; in the
    n-node form a coordinator (the InsultService's master, which keeps the directory of
    live nodes; the filter's front, a master-held queue) and nodes started with
    ``--node-id`` (InsultService processes that clients call directly; filter workers).
    Shared state lives in Redis (:mod:`middlewares.cluster`).

    ``_support_processes`` lists what must run first (Pyro4's name server).
    """

    #: The package of the middleware's modules, e.g. ``middlewares.xmlrpc``.
    package: str

    def processes(self, service: str, settings: Settings, workers: int) -> list[ProcessSpec]:
        """The service's server and, for the filter, ``workers`` worker processes."""
        _check_service(service, SERVICES, "service")
        args = settings.to_args()
        specs = self._support_processes(settings)
        specs.append(ProcessSpec(f"{self.name}-{service}", self._module(service), args))
        if service == "filter":
            # Unique per launcher and stable across restarts, so a restarted worker
            # reclaims (re-queues) exactly the tasks its killed predecessor held.
            launcher = f"{socket.gethostname()}-{os.getpid()}"
            specs += [
                ProcessSpec(
                    f"{self.name}-filter-worker-{n}",
                    f"{self.package}.filter_worker",
                    [*args, "--worker-id", f"{launcher}-{n}"],
                    restart=True,
                )
                for n in range(1, workers + 1)
            ]
        return specs

    def node_process(self, service: str, settings: Settings, node: str) -> ProcessSpec:
        """An InsultService node or a filter worker with id ``node``; restarted if it
        crashes, let go when it leaves (SIGTERM, exit 0)."""
        _check_service(service, NODE_SERVICES, "n-node service")
        _require_redis(settings)
        module = f"{self.package}.filter_worker" if service == "filter" else self._module(service)
        return ProcessSpec(
            f"{self.name}-{service}-node-{node}",
            module,
            [*settings.to_args(), "--node-id", node],
            restart=True,
            role="node",
        )

    def coordinator_processes(
        self, service: str, settings: Settings, nodes: int
    ) -> list[ProcessSpec]:
        """The master (insult) or the front (filter), told to wait for ``nodes`` nodes."""
        _check_service(service, NODE_SERVICES, "n-node service")
        _require_redis(settings)
        module = f"{self.package}.master" if service == "insult" else self._module(service)
        args = [*settings.to_args(), EXPECT_FLAGS[service], str(nodes)]
        return [
            *self._support_processes(settings),
            ProcessSpec(f"{self.name}-{service}-master", module, args, role="coordinator"),
        ]

    def cleanup(self, settings: Settings) -> None:
        """Delete the n-node form's keys from Redis, if it answers. Everything else lives
        in the service processes, and goes when the deployment stops them."""
        delete_shared_state(settings)

    def _support_processes(self, settings: Settings) -> list[ProcessSpec]:
        return []

    def _module(self, service: str) -> str:
        return f"{self.package}.{service}_service"


def _check_service(service: str, services: tuple[str, ...], kind: str) -> None:
    if service not in services:
        raise ValueError(f"unknown {kind} {service!r}; choose one of {', '.join(services)}")


def _require_redis(settings: Settings) -> None:
    """The n-node form keeps its shared state in Redis: say so now if it does not answer."""
    redis_client(settings).close()
