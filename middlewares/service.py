"""Service logic every middleware shares: request dispatch, broadcasting, insult refresh.

The transport packages only move bytes; what a request means, how a broadcast is timed,
when a worker re-reads the insult list and how a dead subscriber is dropped is decided
here once, so the four middlewares behave the same.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Protocol

from middlewares.core import InsultError, Limits, canonical_insult, load_default_insults

log = logging.getLogger(__name__)


class InsultOps(Protocol):
    """What a store must offer for :func:`dispatch_insult_request`."""

    def add(self, insult: str) -> bool:
        """Add a canonical insult; True if it was new."""
        ...

    def all(self) -> list[str]:
        """Every stored insult."""
        ...

    def random(self) -> str:
        """A random insult, or ""."""
        ...


#: The InsultService operations of the JSON protocols (Redis, RabbitMQ) and their arity.
INSULT_OPS = {"add_insult": 1, "get_insults": 0, "random_insult": 0}


def decode_request(body: bytes | str) -> dict[str, Any]:
    """Parse a JSON request object, or raise :class:`InsultError` saying what is wrong."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise InsultError(f"request is not valid JSON: {error}") from None
    if not isinstance(message, dict):
        raise InsultError(f"request must be a JSON object, got {type(message).__name__}")
    return message


def dispatch_insult_request(
    store: InsultOps, op: object, args: object, limits: Limits
) -> object:
    """Run one InsultService operation named by a JSON request; raises InsultError."""
    if op not in INSULT_OPS:
        raise InsultError(f"unknown op {op!r}; expected one of {', '.join(INSULT_OPS)}")
    if not isinstance(args, list):
        raise InsultError(f"args must be a JSON array, got {type(args).__name__}")
    if len(args) != INSULT_OPS[op]:
        raise InsultError(f"{op} takes {INSULT_OPS[op]} argument(s), got {len(args)}")
    if op == "add_insult":
        return store.add(canonical_insult(args[0], limits))
    if op == "get_insults":
        return store.all()
    return store.random()


def ok_reply(result: object, **extra: object) -> bytes:
    """The JSON body of a successful reply."""
    return json.dumps({**extra, "ok": True, "result": result}).encode()


def error_reply(message: str, **extra: object) -> bytes:
    """The JSON body of a refused request."""
    return json.dumps({**extra, "ok": False, "error": message}).encode()


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
    nodes in the n-node form (``middlewares.direct.RedisSubscriberRegistry``), so
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

    ``notify(address, insult)`` must raise on failure and honour a timeout of its own. A
    subscriber failing ``max_failures`` broadcasts in a row is dropped; one that hangs
    costs the others nothing, since each is notified on a pool thread and the round is
    not waited on beyond ``round_timeout``. The subscribers live in ``registry``: this
    process's memory by default, Redis for the n-node form.
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
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="notify")

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
        """Notify every subscriber not still busy with an earlier broadcast."""
        subscribers = self._registry.addresses()
        with self._lock:
            targets = [a for a in subscribers if a not in self._busy]
            self._busy.update(targets)
        futures = [self._pool.submit(self._deliver, address, insult) for address in targets]
        wait(futures, timeout=self._round_timeout)

    def _deliver(self, address: Hashable, insult: str) -> None:
        try:
            self._notify(address, insult)
            failed = False
        except Exception as error:
            failed = True
            log.info("subscriber %s failed: %s", address, error)
        try:
            if self._registry.record(address, failed, self._max_failures):
                log.warning("dropped subscriber %s after %d failures", address, self._max_failures)
        except Exception:
            log.exception("could not record the delivery to %s", address)
        finally:
            with self._lock:
                self._busy.discard(address)

    def close(self) -> None:
        """Stop the notification threads without waiting for hung subscribers."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class RefreshingInsults:
    """The insult list a filter worker censors with, re-read at most every ``interval``.

    ``fetch`` returns the InsultService's current list, or None when no InsultService
    runs in the namespace; then the default list is used. A failing fetch keeps the last
    good list, so a hiccup in the service never stops the filter.
    """

    def __init__(self, fetch: Callable[[], list[str] | None], interval: float) -> None:
        self._fetch = fetch
        self._interval = interval
        self._defaults = load_default_insults()
        self._insults = self._defaults
        self._next_refresh = 0.0

    def current(self) -> list[str]:
        """The list to censor with now; refreshes it when it is older than the interval."""
        now = time.monotonic()
        if now >= self._next_refresh:
            self._next_refresh = now + self._interval
            try:
                fetched = self._fetch()
                self._insults = self._defaults if fetched is None else fetched
            except Exception as error:
                log.warning("could not refresh the insult list, keeping the last one: %s", error)
        return self._insults
