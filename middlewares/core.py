"""The domain core shared by all eight services: insult rules, the store and the censor.

Nothing here knows about a transport. Every middleware validates requests with
:func:`canonical_insult` and :func:`validate_text`, and censors with :class:`Censor`, so
the four implementations cannot drift apart in semantics.
"""

from __future__ import annotations

import random
import re
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

#: The word that replaces every insult in a filtered text.
CENSORED = "CENSORED"


class InsultError(ValueError):
    """A request broke a domain rule; the message names the rule and the offending value."""


@dataclass(frozen=True)
class Limits:
    """Size limits applied to every request, whatever the middleware.

    ``max_message_depth`` bounds the JSON nesting of a whole message of the queue-based
    middlewares: theirs nest two levels deep, and a deeper one is refused before parsing.
    """

    max_insult_chars: int = 64
    max_text_bytes: int = 64 * 1024
    max_message_depth: int = 16

    @property
    def max_message_bytes(self) -> int:
        """Largest JSON message worth parsing: a text of the largest size with every byte
        escaped (``\\u0001`` is 6 bytes), plus its envelope (id, reply address)."""
        return 6 * self.max_text_bytes + 4096


DEFAULT_LIMITS = Limits()


def _describe(value: object) -> str:
    return type(value).__name__


def canonical_insult(value: object, limits: Limits = DEFAULT_LIMITS) -> str:
    """Return the stored form of an insult, or raise :class:`InsultError`.

    The stored form is stripped, has inner runs of white space folded to one space and
    is lower-cased, so "  Tonto " and "TONTO" are the same insult.
    """
    if not isinstance(value, str):
        raise InsultError(f"insult must be a string, got {_describe(value)}")
    folded = " ".join(value.split()).lower()
    if not folded:
        raise InsultError("insult is empty")
    if not _encodable(folded):
        raise InsultError("insult is not valid Unicode (it contains a lone surrogate)")
    if len(folded) > limits.max_insult_chars:
        raise InsultError(
            f"insult is {len(folded)} characters long, over the limit of "
            f"{limits.max_insult_chars}"
        )
    return folded


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_text(value: object, limits: Limits = DEFAULT_LIMITS) -> str:
    """Return ``value`` if it is a text the filter accepts, or raise :class:`InsultError`."""
    if not isinstance(value, str):
        raise InsultError(f"text must be a string, got {_describe(value)}")
    if not value:
        raise InsultError("text is empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise InsultError(f"text is not valid Unicode: {error.reason}") from None
    if size > limits.max_text_bytes:
        raise InsultError(
            f"text is {size} bytes of UTF-8, over the limit of {limits.max_text_bytes}"
        )
    return value


def validate_limit(value: object, maximum: int) -> int:
    """Check the ``limit`` argument of ``get_results``: an int from 0 to ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InsultError(f"limit must be an integer, got {_describe(value)}")
    if not 0 <= value <= maximum:
        raise InsultError(f"limit must be between 0 and {maximum}, got {value}")
    return value


def load_default_insults() -> list[str]:
    """The insults shipped in ``middlewares/data/insults.txt``, in canonical form."""
    text = resources.files("middlewares").joinpath("data/insults.txt").read_text("utf-8")
    lines = (line.strip() for line in text.splitlines())
    return [canonical_insult(line) for line in lines if line and not line.startswith("#")]


class InsultStore:
    """A thread-safe in-memory set of insults, used by the direct middlewares.

    Redis and RabbitMQ keep the same semantics in a Redis set; see their modules.
    """

    def __init__(self, insults: Iterable[str] = (), limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._insults: list[str] = []
        self._known: set[str] = set()
        for insult in insults:
            self.add(insult)

    def add(self, insult: object) -> bool:
        """Add an insult; True only when it was not stored yet."""
        canonical = canonical_insult(insult, self._limits)
        with self._lock:
            if canonical in self._known:
                return False
            self._known.add(canonical)
            self._insults.append(canonical)
            return True

    def all(self) -> list[str]:
        """Every stored insult, in the order they were added."""
        with self._lock:
            return list(self._insults)

    def random(self) -> str:
        """One stored insult chosen at random, or "" when the store is empty."""
        with self._lock:
            return random.choice(self._insults) if self._insults else ""

    def __len__(self) -> int:
        with self._lock:
            return len(self._insults)


class Censor:
    """Replaces whole-word (or whole-phrase) insults with :data:`CENSORED`.

    The regular expression is compiled once per distinct set of insults, so a worker can
    call :meth:`censor` for every task and pay for compilation only when the set changes.
    """

    def __init__(self) -> None:
        self._insults: frozenset[str] | None = None
        self._pattern: re.Pattern[str] | None = None

    def censor(self, text: str, insults: Iterable[str]) -> str:
        """Return ``text`` with every insult of ``insults`` replaced, in any letter case."""
        wanted = frozenset(insults)
        if wanted != self._insults:
            self._insults = wanted
            self._pattern = _compile(wanted)
        if self._pattern is None:
            return text
        return self._pattern.sub(CENSORED, text)


def _compile(insults: frozenset[str]) -> re.Pattern[str] | None:
    if not insults:
        return None
    # Longest first, so the phrase "big fool" wins over the word "fool" inside it.
    ordered = sorted(insults, key=len, reverse=True)
    # Inside a phrase any run of white space matches, so "big  fool" is still censored.
    alternatives = (r"\s+".join(re.escape(word) for word in insult.split()) for insult in ordered)
    # Look-arounds rather than \b: \b fails next to an insult that ends in punctuation.
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def censor(text: str, insults: Iterable[str]) -> str:
    """Censor one text; a convenience over :class:`Censor` for one-off calls."""
    return Censor().censor(text, insults)


class ResultLog:
    """The bounded list of filtered texts a filter keeps for ``get_results``: newest kept."""

    def __init__(self, size: int) -> None:
        self._texts: deque[str] = deque(maxlen=size)
        self._lock = threading.Lock()

    def append(self, text: str) -> None:
        """Remember one filtered text, dropping the oldest when full."""
        with self._lock:
            self._texts.append(text)

    def newest(self, limit: int) -> list[str]:
        """Up to ``limit`` filtered texts, newest first."""
        with self._lock:
            count = min(limit, len(self._texts))
            return [self._texts[-1 - index] for index in range(count)]
