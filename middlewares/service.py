"""The two services, written once: the InsultService and the InsultFilter's step.

Every transport runs these objects and has no service logic of its own, so the four
middlewares cannot drift apart:

- XML-RPC and Pyro4 expose the methods of :class:`InsultService` (its
  ``REMOTE_METHODS``) one by one;
- RabbitMQ hands every request body to :meth:`InsultService.dispatch`;
- Redis parses a request with :meth:`InsultService.parse` and applies it inside the Lua
  script that acknowledges the request and writes the reply, so an add happens exactly
  once even when a request is delivered twice (see ``middlewares/redis/lua/ack.lua``).

Parsing (validate the request, spend the simulated service time) and applying (run it
on a store) are separate for that reason. A filter task, on every transport, is one call
of :meth:`FilterStep.censor`: validate, spend the service time, censor.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from middlewares.broadcast import SubscriberSet
from middlewares.core import (
    Censor,
    InsultError,
    Limits,
    canonical_insult,
    load_default_insults,
    validate_text,
)
from middlewares.messages import decode_request as decode_request  # re-exported
from middlewares.messages import handle_message
from middlewares.settings import Settings

log = logging.getLogger(__name__)

#: The InsultService operations of the JSON protocols (Redis, RabbitMQ) and their arity.
INSULT_OPS = {"add_insult": 1, "get_insults": 0, "random_insult": 0}


class InsultOps(Protocol):
    """What a store must offer the InsultService: in memory, or the Redis set."""

    def add(self, insult: str) -> bool:
        """Add a canonical insult; True if it was new."""
        ...

    def all(self) -> list[str]:
        """Every stored insult."""
        ...

    def random(self) -> str:
        """A random insult, or ""."""
        ...


@dataclass(frozen=True)
class InsultRequest:
    """One validated InsultService operation, ready to apply to a store.

    Attributes:
        op: ``add_insult``, ``get_insults`` or ``random_insult``.
        insult: The canonical insult of an ``add_insult``; "" otherwise.
    """

    op: str
    insult: str = ""


#: The requests without an argument, built once: every such request is the same value.
_WITHOUT_ARGUMENTS = {op: InsultRequest(op) for op, arity in INSULT_OPS.items() if not arity}


def parse_insult_request(op: object, args: object, limits: Limits) -> InsultRequest:
    """Check an operation and its arguments; raises :class:`InsultError` naming the problem."""
    if not isinstance(op, str) or op not in INSULT_OPS:
        raise InsultError(f"unknown op {op!r}; expected one of {', '.join(INSULT_OPS)}")
    if not isinstance(args, (list, tuple)):  # a tuple of types: faster than list | tuple
        raise InsultError(f"args must be a JSON array, got {type(args).__name__}")
    if len(args) != INSULT_OPS[op]:
        raise InsultError(f"{op} takes {INSULT_OPS[op]} argument(s), got {len(args)}")
    if op == "add_insult":
        return InsultRequest(op, canonical_insult(args[0], limits))
    return _WITHOUT_ARGUMENTS[op]


def apply_insult_request(store: InsultOps, request: InsultRequest) -> Any:
    """Run a parsed request on ``store`` and return its result."""
    if request.op == "add_insult":
        return store.add(request.insult)
    if request.op == "get_insults":
        return store.all()
    return store.random()


class InsultService:
    """The InsultService: a set of insults, and subscribers for the direct middlewares.

    ``store`` is in this process for the one-node form and the Redis set shared by every
    node in the n-node form. ``subscribers`` and ``check_address`` (the transport's check
    of a subscriber's address, a URL or a Pyro4 URI) are given by XML-RPC and Pyro4,
    whose service calls its subscribers; Redis and RabbitMQ broadcast through the broker.

    Every operation spends the simulated service time (``settings.work_ms``) once.
    Refusals raise :class:`InsultError`; a failing shared store raises
    :class:`~middlewares.contract.StoreUnavailable`.
    """

    #: The methods a direct transport exposes: nothing else of this class is remote.
    REMOTE_METHODS = ("add_insult", "get_insults", "random_insult", "subscribe", "unsubscribe")

    def __init__(
        self,
        store: InsultOps,
        settings: Settings,
        subscribers: SubscriberSet | None = None,
        check_address: Callable[[object], str] = str,
    ) -> None:
        self._store = store
        self._settings = settings
        self._limits = settings.limits  # a property that builds a new object each time
        self._subscribers = subscribers
        self._check_address = check_address

    def add_insult(self, insult: object) -> bool:
        """Store an insult; True only when it was new."""
        return self.apply(self.parse("add_insult", (insult,)))

    def get_insults(self) -> list[str]:
        """Every stored insult, in canonical form."""
        return self.apply(self.parse("get_insults", ()))

    def random_insult(self) -> str:
        """A random stored insult, or "" when there is none."""
        return self.apply(self.parse("random_insult", ()))

    def subscribe(self, address: object) -> bool:
        """Send broadcasts to the subscriber's server at ``address``; False if it already was."""
        return self._subscriber_set().add(self._check_address(address))

    def unsubscribe(self, address: object) -> bool:
        """Stop sending broadcasts to ``address``; False if it was not subscribed."""
        return self._subscriber_set().remove(self._check_address(address))

    def parse(self, op: object, args: object) -> InsultRequest:
        """Receive one request: spend the service time, then validate it."""
        simulate_work(self._settings)
        return parse_insult_request(op, args, self._limits)

    def apply(self, request: InsultRequest) -> Any:
        """Run a parsed request on the store."""
        return apply_insult_request(self._store, request)

    def dispatch(self, body: bytes) -> bytes:
        """Answer one JSON request body (``{"op", "args"}``) with a JSON reply body.

        Bad requests, a failing shared store and anything else that goes wrong get an
        error reply (see :func:`~middlewares.messages.handle_message`); nothing raises.
        """
        return handle_message(body, self._limits, self._answer, _refusal)

    def parse_message(self, request: dict[str, Any]) -> InsultRequest:
        """Receive one decoded JSON request ``{"op", "args"}`` (``args`` may be left out)."""
        return self.parse(request.get("op"), request.get("args", ()))

    def _answer(self, body: bytes, request: dict[str, Any]) -> bytes:
        return ok_reply(self.apply(self.parse_message(request)))

    def _subscriber_set(self) -> SubscriberSet:
        if self._subscribers is None:
            raise InsultError("this InsultService broadcasts through its broker; subscribe there")
        return self._subscribers


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


class FilterStep:
    """One InsultFilter task, the same on every transport: validate the text, spend the
    simulated service time, censor it with the InsultService's current insults.

    ``fetch_insults`` is what :class:`RefreshingInsults` re-reads.
    """

    def __init__(self, settings: Settings, fetch_insults: Callable[[], list[str] | None]) -> None:
        self._settings = settings
        self._limits = settings.limits  # a property that builds a new object each time
        self._insults = RefreshingInsults(fetch_insults, settings.insult_refresh)
        self._censor = Censor()

    def censor(self, text: object) -> str:
        """The censored form of ``text``; raises :class:`InsultError` for a bad text."""
        checked = validate_text(text, self._limits)
        simulate_work(self._settings)
        return self._censor.censor(checked, self._insults.current())


def _refusal(body: bytes, request: dict[str, Any] | None, error: str) -> bytes:
    return error_reply(error)


def ok_reply(result: object, **extra: object) -> bytes:
    """The JSON body of a successful reply."""
    return json.dumps({**extra, "ok": True, "result": result}).encode()


def error_reply(message: str, **extra: object) -> bytes:
    """The JSON body of a refused request."""
    return json.dumps({**extra, "ok": False, "error": message}).encode()


#: One simulated unit of work at a time per process (see :func:`simulate_work`).
_WORK_SLOT = threading.Lock()


def simulate_work(settings: Settings) -> None:
    """Spend ``settings.work_ms`` as the speedup study asks: sleeping or burning CPU.

    Either way a process does one request's work at a time, like a node with one core:
    a thread-per-connection server (XML-RPC, Pyro4) would otherwise sleep for all its
    clients at once, and its capacity would not depend on ``work_ms`` at all, while a
    single-consumer node (Redis, RabbitMQ) serves one request at a time anyway.
    """
    if settings.work_ms <= 0:
        return
    seconds = settings.work_ms / 1000
    with _WORK_SLOT:
        if settings.work_kind == "sleep":
            time.sleep(seconds)
            return
        _burn(seconds)


def _burn(seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    value = 0.0
    while time.perf_counter() < deadline:
        value = math.sin(value + 1.0)
