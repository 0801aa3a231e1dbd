"""What the load generator sends: the workload of each service, fixed data and checks.

A workload names the service, how requests are issued (one at a time, or a window of
filter tasks in flight), the InsultService operation mix and, for an open loop, the
offered rate. The data a client sends comes from small fixed pools, so a run never grows
the store without bound and every reply can be checked against the expected one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from middlewares.core import DEFAULT_LIMITS, censor, load_default_insults

SERVICES = ("insult", "filter", "echo")
MODES = ("sync", "pipelined")
INSULT_OPERATIONS = ("random_insult", "add_insult", "get_insults")

#: Mostly reads, as an insult service is used: 80% random_insult, 10% add, 10% list.
DEFAULT_MIX: tuple[tuple[str, float], ...] = (
    ("random_insult", 8.0),
    ("add_insult", 1.0),
    ("get_insults", 1.0),
)

#: ``add_insult`` cycles through these, so the store grows by at most this many entries.
ADD_POOL = tuple(f"stress insult {number}" for number in range(32))

#: Texts submitted to the filter: short sentences, some with insults, some without.
FILTER_TEXTS = (
    "You are a fool and a nitwit, said the buffoon to the scoundrel.",
    "Nothing to censor here: a perfectly polite sentence about the weather.",
    "Eres tonto, muy TONTO y un poco feo, pero no tontorron.",
    "The blockhead, the dimwit and the halfwit walked into a bar.",
    "¡Qué melón! Ese gandul es un papanatas y un botarate.",
    "Numbskull! Nincompoop! Idiot! shouted the parrot, word after word.",
    "A zoquete and a mastuerzo argued with a cabezahueca about nothing.",
    "Logs, metrics and traces are how a careful engineer finds a bobo bug.",
)

#: What the echo baseline sends: about the size of a filter text.
ECHO_PAYLOAD = "echo baseline payload: the same bytes there and back again, 64 B."

#: The largest ``--payload-words``: a text of this many of the filter texts' words (at
#: most 12 bytes each with its space) stays under the services' 64 KiB limit.
MAX_PAYLOAD_WORDS = 5000


def sized(text: str, words: int) -> str:
    """``text`` cut or repeated to exactly ``words`` words; ``words`` = 0 keeps it."""
    if not words:
        return text
    return " ".join(itertools.islice(itertools.cycle(text.split()), words))


def filter_texts(words: int = 0) -> tuple[str, ...]:
    """The texts submitted to the filter, each of ``words`` words (0: as written)."""
    return tuple(dict.fromkeys(sized(text, words) for text in FILTER_TEXTS))


def add_pool(words: int = 0) -> tuple[str, ...]:
    """What ``add_insult`` cycles through: :data:`ADD_POOL`, or with ``words`` each
    insult padded to that many words, cut to the services' insult length limit."""
    if not words:
        return ADD_POOL
    limit = DEFAULT_LIMITS.max_insult_chars
    # The first word tells the insults apart, whatever their size.
    return tuple(
        sized(f"stress-insult-{number} {'very ' * words}", words)[:limit]
        for number in range(len(ADD_POOL))
    )


def echo_payload(words: int = 0) -> str:
    """What the echo baseline sends: as many words as a filter text."""
    return sized(ECHO_PAYLOAD, words)


def expected_censored(words: int = 0) -> dict[str, str]:
    """Each filter text of ``words`` words and its censored form under the default
    insult list.

    Every run uses a fresh namespace with no InsultService, so the filter censors with
    the default list and the exact reply is known in advance.
    """
    insults = load_default_insults()
    return {text: censor(text, insults) for text in filter_texts(words)}


def parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    """Parse ``random_insult=8,add_insult=1,get_insults=1``; raises ValueError."""
    mix: list[tuple[str, float]] = []
    for part in text.split(","):
        name, sep, weight = part.partition("=")
        name = name.strip()
        if not sep or name not in INSULT_OPERATIONS:
            raise ValueError(
                f"bad mix entry {part!r}: write op=weight with op one of "
                f"{', '.join(INSULT_OPERATIONS)}"
            )
        try:
            value = float(weight)
        except ValueError:
            raise ValueError(f"bad weight in mix entry {part!r}: not a number") from None
        if value < 0:
            raise ValueError(f"bad weight in mix entry {part!r}: must not be negative")
        mix.append((name, value))
    if sum(weight for _, weight in mix) <= 0:
        raise ValueError("the mix needs at least one operation with a positive weight")
    return tuple(mix)


def format_mix(mix: tuple[tuple[str, float], ...]) -> str:
    """The inverse of :func:`parse_mix`."""
    return ",".join(f"{name}={weight:g}" for name, weight in mix)


@dataclass(frozen=True)
class Workload:
    """How one run loads one service.

    Attributes:
        service: ``insult``, ``filter`` or ``echo`` (the transport baseline).
        mode: ``sync`` (each client waits for every reply before the next request) or
            ``pipelined`` (filter only: up to ``window`` tasks in flight per client).
        window: Tasks in flight per client in pipelined mode; 1 in sync mode.
        mix: InsultService operations and their relative weights.
        rate: Offered load in operations per second over all clients; 0 means a closed
            loop (each client sends as fast as replies come back).
        tasks: Fixed work: this many operations over all clients, sent as fast as the
            service allows and timed from the first sent to the last confirmed; 0 means
            a measurement window of fixed duration.
        payload_words: Words in every filter text and echo payload, and in every added
            insult up to the insult length limit; 0 keeps the built-in sentences.
    """

    service: str
    mode: str = "sync"
    window: int = 1
    mix: tuple[tuple[str, float], ...] = DEFAULT_MIX
    rate: float = 0.0
    tasks: int = 0
    payload_words: int = 0

    def __post_init__(self) -> None:
        if self.service not in SERVICES:
            raise ValueError(f"service must be one of {', '.join(SERVICES)}, got {self.service!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "pipelined" and self.service != "filter":
            raise ValueError("only the filter has a pipelined mode")
        if self.mode == "sync" and self.window != 1:
            raise ValueError("a sync workload has a window of 1")
        if self.window < 1:
            raise ValueError(f"window must be at least 1, got {self.window}")
        if self.rate < 0:
            raise ValueError(f"rate must not be negative, got {self.rate}")
        if self.tasks < 0:
            raise ValueError(f"tasks must not be negative, got {self.tasks}")
        if not 0 <= self.payload_words <= MAX_PAYLOAD_WORDS:
            raise ValueError(
                f"payload_words must be between 0 and {MAX_PAYLOAD_WORDS}, got {self.payload_words}"
            )
        if self.tasks and self.rate:
            raise ValueError("fixed work is sent as fast as possible: give tasks or a rate")

    @property
    def loop(self) -> str:
        """``closed`` or ``open``."""
        return "open" if self.rate else "closed"

    @property
    def label(self) -> str:
        """A short name for tables and file names, e.g. ``filter-pipelined``."""
        return self.service if self.mode == "sync" else f"{self.service}-{self.mode}"
