"""Broadcasts of the InsultService: the timer, and the subscribers of the direct middlewares.

Redis and RabbitMQ broadcast through the broker (a channel, a fanout exchange), so they
need only :class:`Broadcaster` (one-node form) or
:class:`~middlewares.cluster.lease.LeasedBroadcaster` (n-node form). XML-RPC and Pyro4
call every subscriber's own server: :class:`SubscriberSet` notifies them in parallel
and drops one that keeps failing, and a :class:`SubscriberRegistry` keeps them, in this
process or, for the n-node form, in Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Protocol

from middlewares.contract import InsultClient

log = logging.getLogger(__name__)


class Broadcaster(threading.Thread):
    """Every ``interval`` seconds, sends one random insult through ``send``.

    ``pick`` returns "" for an empty store, and then nothing is sent. Errors in ``send``
    are logged and the next tick goes on: a broadcast must never kill the service.
    """

    def __init__(
        self, interval: float, pick: Callable[[], str], send: Callable[[str], None]
    ) -> None:
        super().__init__(name="broadcaster", daemon=True)
        self._interval = interval
        self._pick = pick
        self._send = send
        self._stopped = threading.Event()

    def run(self) -> None:
        """Tick on a fixed schedule, so a slow send does not stretch the interval."""
        next_tick = time.monotonic() + self._interval
        while not self._stopped.wait(max(0.0, next_tick - time.monotonic())):
            next_tick += self._interval
            try:
                insult = self._pick()
                if insult:
                    self._send(insult)
            except Exception:
                log.exception("broadcast failed; trying again next interval")

    def stop(self) -> None:
        """Stop ticking; the current send, if any, finishes."""
        self._stopped.set()


class SubscriberRegistry(Protocol):
    """Where a :class:`SubscriberSet` keeps its subscribers and their failure counts.

    In one process for the one-node form (:class:`InMemorySubscribers`); shared by all
    nodes in the n-node form (:class:`~middlewares.cluster.subscribers.RedisSubscriberRegistry`), so
    whichever node broadcasts reaches every subscriber, whichever node it subscribed on.
    """

    def add(self, address: Hashable) -> bool:
        """Subscribe ``address`` with no failures; False if it already was."""
        ...

    def remove(self, address: Hashable) -> bool:
        """Unsubscribe ``address``; False if it was not subscribed."""
        ...

    def addresses(self) -> list[Hashable]:
        """The current subscribers."""
        ...

    def record(self, address: Hashable, failed: bool, max_failures: int) -> bool:
        """Count a failed delivery (or reset the count after a good one); drop a
        subscriber reaching ``max_failures`` in a row and return True then. Does nothing
        for an address no longer subscribed: it must not come back."""
        ...


class InMemorySubscribers:
    """The :class:`SubscriberRegistry` of a single process."""

    def __init__(self) -> None:
        self._failures: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def add(self, address: Hashable) -> bool:
        """Subscribe ``address``; False if it already was."""
        with self._lock:
            if address in self._failures:
                return False
            self._failures[address] = 0
            return True

    def remove(self, address: Hashable) -> bool:
        """Unsubscribe ``address``; False if it was not subscribed."""
        with self._lock:
            return self._failures.pop(address, None) is not None

    def addresses(self) -> list[Hashable]:
        """The current subscribers."""
        with self._lock:
            return list(self._failures)

    def record(self, address: Hashable, failed: bool, max_failures: int) -> bool:
        """Count a delivery; True when the subscriber was dropped now."""
        with self._lock:
            if address not in self._failures:
                return False
            self._failures[address] = self._failures[address] + 1 if failed else 0
            if self._failures[address] < max_failures:
                return False
            del self._failures[address]
            return True


class SubscriberSet:
    """Subscribers of a direct middleware (XML-RPC, Pyro4), notified in parallel.

    ``notify(address, insult)`` must raise on failure and honour a (short) timeout of its
    own. A subscriber failing ``max_failures`` broadcasts in a row is dropped; one still
    busy with the previous broadcast when the next comes has failed that one too, so a
    hung subscriber is dropped within ``max_failures`` broadcasts however many hang.

    Hung subscribers never delay healthy ones: subscribers whose last delivery (from
    this process) succeeded are notified on pool threads of their own, so a crowd of new
    or failing ones, each holding a thread until its timeout, only waits for threads of
    the other pool. The round is not waited on beyond ``round_timeout``. The
    subscribers live in ``registry``: this process's memory by default, Redis for the
    n-node form.
    """

    def __init__(
        self,
        notify: Callable[[Hashable, str], None],
        max_failures: int = 3,
        round_timeout: float = 2.0,
        threads: int = 16,
        registry: SubscriberRegistry | None = None,
    ) -> None:
        self._notify = notify
        self._max_failures = max_failures
        self._round_timeout = round_timeout
        self._registry: SubscriberRegistry = registry or InMemorySubscribers()
        # Local to this process: only its own pool threads can still be busy.
        self._busy: set[Hashable] = set()
        self._answering: set[Hashable] = set()
        self._lock = threading.Lock()
        self._answering_pool = ThreadPoolExecutor(threads, thread_name_prefix="notify")
        self._other_pool = ThreadPoolExecutor(threads, thread_name_prefix="notify-unproven")

    def add(self, address: Hashable) -> bool:
        """Subscribe ``address``; False if it already was."""
        return self._registry.add(address)

    def remove(self, address: Hashable) -> bool:
        """Unsubscribe ``address``; False if it was not subscribed."""
        return self._registry.remove(address)

    def addresses(self) -> list[Hashable]:
        """The current subscribers."""
        return self._registry.addresses()

    def broadcast(self, insult: str) -> None:
        """Notify every subscriber not still busy with an earlier broadcast; count one
        still busy as failed."""
        subscribers = self._registry.addresses()
        with self._lock:
            late = [a for a in subscribers if a in self._busy]
            targets = [(a, a in self._answering) for a in subscribers if a not in self._busy]
            self._busy.update(address for address, _ in targets)
        for address in late:
            self._record(address, failed=True)
        futures = [
            (self._answering_pool if answering else self._other_pool).submit(
                self._deliver, address, insult
            )
            for address, answering in targets
        ]
        wait(futures, timeout=self._round_timeout)

    def _deliver(self, address: Hashable, insult: str) -> None:
        try:
            self._notify(address, insult)
            failed = False
        except Exception as error:
            failed = True
            log.info("subscriber %s failed: %s", address, error)
        try:
            self._record(address, failed)
        finally:
            with self._lock:
                self._busy.discard(address)

    def _record(self, address: Hashable, failed: bool) -> None:
        with self._lock:
            if failed:
                self._answering.discard(address)
            else:
                self._answering.add(address)
        try:
            if self._registry.record(address, failed, self._max_failures):
                log.warning("dropped subscriber %s after %d failures", address, self._max_failures)
                with self._lock:
                    self._answering.discard(address)
        except Exception:
            log.exception("could not record the delivery to %s", address)

    def close(self) -> None:
        """Stop the notification threads without waiting for hung subscribers."""
        self._answering_pool.shutdown(wait=False, cancel_futures=True)
        self._other_pool.shutdown(wait=False, cancel_futures=True)


class _Stoppable(Protocol):
    def stop(self) -> None: ...


class BrokerSubscriptionClient(InsultClient):
    """An InsultService client whose broadcasts come from a broker, on a thread of its own.

    Redis and RabbitMQ clients hold at most one such subscription; they set
    ``_subscription`` in ``subscribe`` (after :meth:`unsubscribe`) and say how to close
    their connection in :meth:`_close_connection`.
    """

    _subscription: _Stoppable | None = None

    def unsubscribe(self) -> None:
        """Stop receiving broadcasts; the broker forgets the subscription."""
        if self._subscription is not None:
            self._subscription.stop()
            self._subscription = None

    def close(self) -> None:
        """Unsubscribe and close the connections."""
        self.unsubscribe()
        self._close_connection()

    @abstractmethod
    def _close_connection(self) -> None:
        """Close what the client holds besides the subscription."""
