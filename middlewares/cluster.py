"""Shared state of the n-node form, the same for all four middlewares.

In the n-node form the insult store, the broadcaster lease and the per-node counters live
in Redis, whatever middleware carries the requests. One design for all four keeps the
comparison about the transport: every middleware pays the same store round trip, and
SADD makes "add if new" atomic across nodes (no check-then-insert race).

The direct middlewares (XML-RPC, Pyro4) also need a registry of live nodes, which their
master process keeps with :class:`NodeRegistry`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable

import redis

from middlewares.contract import BrokerUnavailable
from middlewares.core import DEFAULT_LIMITS, Limits, canonical_insult
from middlewares.settings import Settings

log = logging.getLogger(__name__)


def redis_client(settings: Settings) -> redis.Redis:
    """A connection to the Redis that holds the n-node form's shared state.

    Raises :class:`BrokerUnavailable` naming the URL when it does not answer, since the
    n-node form of every middleware needs it.
    """
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.timeout,
        socket_connect_timeout=min(settings.timeout, 3.0),
    )
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        raise BrokerUnavailable(
            settings.redis_url,
            f"{error}; the n-node form keeps its shared state in Redis: start it with "
            "`python -m middlewares brokers up` or `docker compose up -d redis`",
        ) from None
    return client


def store_key(namespace: str) -> str:
    """The Redis set holding the insults of ``namespace`` (same key as the Redis backend)."""
    return f"{namespace}:insults:store"


def lease_key(namespace: str) -> str:
    """The Redis string holding the id of the node that broadcasts for ``namespace``."""
    return f"{namespace}:insults:broadcaster"


class RedisInsultStore:
    """The insult set in Redis; implements :class:`middlewares.service.InsultOps`."""

    def __init__(
        self, client: redis.Redis, namespace: str, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self._client = client
        self._key = store_key(namespace)
        self._limits = limits

    def add(self, insult: str) -> bool:
        """Add an insult; True only for the one caller, of all nodes, that added it."""
        return bool(self._client.sadd(self._key, canonical_insult(insult, self._limits)))

    def add_all(self, insults: Iterable[str]) -> None:
        """Add many insults in one round trip (the defaults at start)."""
        canonical = [canonical_insult(insult, self._limits) for insult in insults]
        if canonical:
            self._client.sadd(self._key, *canonical)

    def all(self) -> list[str]:
        """Every stored insult, sorted (a Redis set has no order)."""
        return sorted(member.decode() for member in self._client.smembers(self._key))

    def random(self) -> str:
        """A random stored insult, or "" when the set is empty."""
        member = self._client.srandmember(self._key)
        return member.decode() if member else ""


_ACQUIRE_OR_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class BroadcastLease:
    """Elects exactly one broadcaster among the nodes of a deployment.

    Every node calls :meth:`held` once per broadcast interval; the holder renews the
    lease, the others try to take it. The lease outlives one missed renewal and expires
    after ``ttl`` seconds, so when the holder dies another node broadcasts within two
    intervals (with ``ttl`` = 1.5 intervals) and never two at once.
    """

    def __init__(self, client: redis.Redis, namespace: str, holder: str, ttl: float) -> None:
        self._client = client
        self._key = lease_key(namespace)
        self._holder = holder
        self._ttl_ms = max(1, int(ttl * 1000))
        self._acquire = client.register_script(_ACQUIRE_OR_RENEW)
        self._release = client.register_script(_RELEASE)

    def held(self) -> bool:
        """Take or renew the lease; True when this node is the broadcaster now."""
        return bool(self._acquire(keys=[self._key], args=[self._holder, self._ttl_ms]))

    def release(self) -> None:
        """Give the lease up at a graceful stop, so a successor need not wait for expiry."""
        self._release(keys=[self._key], args=[self._holder])


class RestartSafeLease(BroadcastLease):
    """The broadcaster lease of a node that may be a restarted one.

    A supervisor restarts a crashed node with the same id, so the lease may still name
    it: renewing that lease at once would broadcast sooner than an interval after the
    dead process's last broadcast. So a node bids only after one lease TTL, by which time
    a lease of its earlier life has expired and is taken like any free one.
    """

    def __init__(self, client: redis.Redis, namespace: str, holder: str, ttl: float) -> None:
        super().__init__(client, namespace, holder, ttl)
        self._first_bid = time.monotonic() + ttl

    def held(self) -> bool:
        """False during the first TTL; then take or renew the lease as usual."""
        return time.monotonic() >= self._first_bid and super().held()

    def release(self) -> None:
        """Give the lease up, unless this process never bid (then it is not its lease)."""
        if time.monotonic() >= self._first_bid:
            super().release()


class LeasedBroadcaster(threading.Thread):
    """The n-node form's broadcaster: every node runs one, only the lease holder sends.

    Every quarter interval each node takes or renews the lease (TTL one interval); the
    holder sends one random insult per interval. When the holder dies its lease expires
    within an interval and another node takes it within a quarter more and broadcasts at
    once, so subscribers miss at most one broadcast; since the dead holder renewed no
    earlier than a quarter interval before its last broadcast, two broadcasts are never
    less than 0.75 interval apart.
    """

    def __init__(
        self,
        lease: BroadcastLease,
        interval: float,
        pick: Callable[[], str],
        send: Callable[[str], None],
    ) -> None:
        super().__init__(name="leased-broadcaster", daemon=True)
        self._lease = lease
        self._interval = interval
        self._pick = pick
        self._send = send
        self._stopped = threading.Event()

    @staticmethod
    def lease_ttl(interval: float) -> float:
        """The lease TTL the timing above assumes."""
        return interval

    def run(self) -> None:
        """Poll the lease; broadcast while holding it."""
        last_sent: float | None = None
        while not self._stopped.wait(self._interval / 4):
            try:
                if not self._lease.held():
                    last_sent = None
                    continue
                now = time.monotonic()
                if last_sent is None or now - last_sent >= self._interval:
                    # Keep the schedule steady: the next send is due one interval after
                    # this one was due, not after it happened.
                    last_sent = now if last_sent is None else last_sent + self._interval
                    insult = self._pick()
                    if insult:
                        self._send(insult)
            except Exception:
                log.exception("broadcast tick failed; trying again")

    def stop(self) -> None:
        """Stop and hand the lease over, so another node broadcasts without waiting."""
        self._stopped.set()
        self.join(timeout=self._interval)
        try:
            self._lease.release()
        except redis.RedisError as error:
            log.warning("could not release the broadcast lease: %s", error)


class NodeCounters:
    """Requests or tasks served by one node, published to a Redis hash.

    Counting is local; a thread flushes the total every ``flush_interval`` seconds, so
    the hot path pays no Redis round trip. Harnesses read all nodes with :meth:`read`.
    With ``resume`` the count goes on from the node's published one: a node restarted
    under the same id then never makes a harness's before/after difference negative (at
    most the last ``flush_interval`` before a crash is not counted).
    """

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        service: str,
        node: str,
        flush_interval: float = 0.5,
        resume: bool = False,
    ) -> None:
        self._client = client
        self._key = counters_key(namespace, service)
        self._node = node
        published = client.hget(self._key, node) if resume else None
        self._count = int(published) if published else 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_periodically, args=(flush_interval,), daemon=True
        )
        self._flusher.start()

    def increment(self, amount: int = 1) -> None:
        """Count ``amount`` more requests or tasks served by this node."""
        with self._lock:
            self._count += amount

    def _flush(self) -> None:
        with self._lock:
            count = self._count
        self._client.hset(self._key, self._node, count)

    def _flush_periodically(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            try:
                self._flush()
            except redis.RedisError as error:
                log.warning("could not publish node counters: %s", error)

    def close(self) -> None:
        """Stop the flusher and publish the final count."""
        self._stopped.set()
        self._flusher.join(timeout=2)
        try:
            self._flush()
        except redis.RedisError as error:
            log.warning("could not publish the final node counter: %s", error)

    @staticmethod
    def read(client: redis.Redis, namespace: str, service: str) -> dict[str, int]:
        """Served counts of every node of ``service``, by node id."""
        raw = client.hgetall(counters_key(namespace, service))
        return {node.decode(): int(count) for node, count in raw.items()}


def counters_key(namespace: str, service: str) -> str:
    """The Redis hash of per-node counters for one service of a namespace."""
    return f"{namespace}:stats:{service}"


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
