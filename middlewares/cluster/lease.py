"""Exactly one broadcaster among the nodes of a deployment: a lease in Redis."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from middlewares.cluster.keys import Keys
from middlewares.cluster.scripts import lua

log = logging.getLogger(__name__)


class BroadcastLease:
    """Elects exactly one broadcaster among the nodes of a deployment.

    Every node calls :meth:`held` once per broadcast interval; the holder renews the
    lease, the others try to take it. The lease outlives one missed renewal and expires
    after ``ttl`` seconds, so when the holder dies another node broadcasts within two
    intervals (with ``ttl`` = 1.5 intervals) and never two at once.
    """

    def __init__(self, client: redis.Redis, namespace: str, holder: str, ttl: float) -> None:
        self._client = client
        self._key = Keys(namespace).lease
        self._holder = holder
        self._ttl_ms = max(1, int(ttl * 1000))
        self._acquire = client.register_script(lua(__package__, "lease_acquire"))
        self._release = client.register_script(lua(__package__, "lease_release"))

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
