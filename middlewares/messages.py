"""One message handled without ever crashing its consumer, written once for every transport.

Every queue consumer (the Redis reliable queues, the RabbitMQ request and task queues)
runs each message through :func:`handle_message`: decode (after a cheap check of its size
and nesting), validate and act, or refuse. Any exception, including a RecursionError, a
MemoryError or a TypeError from a shape nobody expected, becomes a refusal, which the
transport answers where the message names a reply address and logs otherwise; either
way the message is then acknowledged. A message can therefore never take its consumer
down and come back to do it again.

The direct middlewares (XML-RPC, Pyro4) answer every remote call on its own; they map
what a call raised with the same :func:`classify`, so the four agree on what is a
refusal, what may succeed later and what is a bug.

Logging is bounded (:class:`BoundedLog`): a client sending bad messages in a loop costs
the service a few log lines a minute, not a flood.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from middlewares.contract import RetryLater
from middlewares.core import DEFAULT_LIMITS, InsultError, Limits

log = logging.getLogger(__name__)

R = TypeVar("R")

#: A JSON string, escapes included; written as an unrolled loop, which re runs without
#: backtracking however long the string is.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
#: Every byte but the four that open or close a JSON array or object.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def check_shape(body: bytes, limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse a message too large or nested too deeply to be worth parsing.

    Runs before ``json.loads``, whose C parser recurses once per level: a body of
    100,000 ``[`` would raise RecursionError, and a huge one could exhaust memory. The
    common case costs two ``bytes.count`` calls: a body with fewer brackets than the
    nesting limit cannot nest deeper than it. Otherwise the strings are cut out (a text
    may be full of brackets) and the remaining brackets are walked once.
    """
    if len(body) > limits.max_message_bytes:
        raise InsultError(
            f"message is {len(body)} bytes, over the limit of {limits.max_message_bytes}"
        )
    deepest = limits.max_message_depth
    if body.count(b"[") + body.count(b"{") <= deepest:
        return
    depth = 0
    for bracket in _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        depth += 1 if bracket in b"[{" else -1
        if depth > deepest:
            raise InsultError(f"message nests deeper than {deepest} levels")


def decode_request(body: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Parse a JSON request object, or raise :class:`InsultError` saying what is wrong."""
    check_shape(body, limits)
    try:
        message = json.loads(body)
    except ValueError as error:  # UnicodeDecodeError included
        raise InsultError(f"request is not valid JSON: {error}") from None
    if not isinstance(message, dict):
        raise InsultError(f"request must be a JSON object, got {type(message).__name__}")
    return message


#: What a failed request is: refused (the client's fault, do not repeat it), retry (may
#: succeed later), timeout (a call that waits on purpose got nothing in time) or internal
#: (a bug of the service; logged with its traceback).
FailureKind = Literal["refused", "retry", "timeout", "internal"]

#: Longest error message sent back: an exception's text may quote the whole input.
_MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class Failure:
    """How to answer a request whose handling raised."""

    kind: FailureKind
    message: str


def classify(error: Exception) -> Failure:
    """The answer to a request whose handling raised ``error``; the same on every transport."""
    if isinstance(error, RecursionError):
        return Failure("refused", "request is nested too deeply to handle")
    if isinstance(error, MemoryError):
        return Failure("refused", "request is too large to handle")
    if isinstance(error, TimeoutError):
        return Failure("timeout", _clip(str(error)))
    if isinstance(error, RetryLater):  # a full queue, a failing shared store
        return Failure("retry", _clip(str(error)))
    if isinstance(error, ValueError):  # a refused argument, InsultError included
        return Failure("refused", _clip(str(error)))
    return Failure("internal", _clip(f"internal error ({type(error).__name__}: {error})"))


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


class BoundedLog:
    """A logger that writes at most ``burst`` lines per ``window`` seconds.

    What it holds back is counted and reported on the next line it writes, so a client
    that sends a bad message in a loop cannot flood the log or fill the disk, while an
    operator still learns how much was dropped. Thread-safe.
    """

    def __init__(self, logger: logging.Logger, burst: int = 20, window: float = 60.0) -> None:
        self._logger = logger
        self._burst = burst
        self._window = window
        self._lock = threading.Lock()
        self._window_end = 0.0
        self._written = 0
        self._held_back = 0

    def log(self, level: int, message: str, *args: object, exc_info: Any = None) -> None:
        """Log one line at ``level``, unless this window's lines are used up."""
        with self._lock:
            now = time.monotonic()
            if now >= self._window_end:
                self._window_end, self._written = now + self._window, 0
            if self._written >= self._burst:
                self._held_back += 1
                return
            self._written += 1
            held_back, self._held_back = self._held_back, 0
        if held_back:
            message += f" ({held_back} similar lines held back)"
        self._logger.log(level, message, *args, exc_info=exc_info)

    def warning(self, message: str, *args: object) -> None:
        """A bad message was refused or dropped."""
        self.log(logging.WARNING, message, *args)

    def error(self, message: str, *args: object, exc_info: Any = None) -> None:
        """A message made the service fail: a bug, logged with its traceback."""
        self.log(logging.ERROR, message, *args, exc_info=exc_info)


#: The log every consumer of this process reports bad messages on.
bad_messages = BoundedLog(logging.getLogger("middlewares.bad-messages"))


def handle_message(
    body: bytes,
    limits: Limits,
    act: Callable[[bytes, dict[str, Any]], R],
    refuse: Callable[[bytes, dict[str, Any] | None, str], R],
) -> R:
    """The one per-message step of every queue consumer: decode, validate, act, or refuse.

    ``act(body, message)`` gets the body and its decoded JSON object and returns the
    outcome to acknowledge (an answer, an acknowledgement carrying one); it may raise
    anything. When decoding or ``act`` fails, ``refuse(body, message, error)`` returns the
    outcome instead: ``message`` is None when the body could not be decoded, and
    ``error`` names the problem. A failure that is a bug of the service is logged
    (bounded) with its traceback. ``refuse`` must not raise: it only builds an answer
    from ``message`` (JSON values of bounded size and depth) and ``error``. Never raises
    itself, so the caller always goes on to acknowledge the message. (The body is passed
    on so that a consumer needs no closure per message.)
    """
    message: dict[str, Any] | None = None
    try:
        message = decode_request(body, limits)
        return act(body, message)
    except Exception as error:
        failure = classify(error)
        if failure.kind == "internal":
            bad_messages.error(
                "a message made the service fail: %s", failure.message, exc_info=error
            )
        return refuse(body, message, failure.message)
