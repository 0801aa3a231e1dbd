"""Offered load as a piecewise-constant rate: the load generator's script and the
simulator's input.

Written on command lines as ``RATE:SECONDS`` steps separated by commas, e.g.
``20:12,100:18,200:15,40:25,0:12`` (20 msg/s for 12 s, then 100 msg/s for 18 s, ...).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dynamic.record import read_ticks


@dataclass(frozen=True)
class Step:
    """``rate`` messages per second for ``seconds`` seconds."""

    rate: float
    seconds: float


class RateTrace:
    """A sequence of steps; time 0 is the start of the first step, and the rate is 0 after
    the last one."""

    def __init__(self, steps: Sequence[Step]) -> None:
        if not steps:
            raise ValueError("a rate trace needs at least one step")
        for step in steps:
            if step.rate < 0 or step.seconds <= 0:
                raise ValueError(
                    f"a step needs a rate >= 0 and a duration > 0, got {step.rate}:{step.seconds}"
                )
        self.steps = list(steps)
        self._ends = list(itertools.accumulate(step.seconds for step in self.steps))
        # Messages sent by the end of each step, for messages_by().
        self._totals = list(itertools.accumulate(step.rate * step.seconds for step in self.steps))

    @classmethod
    def parse(cls, text: str) -> RateTrace:
        """Read ``RATE:SECONDS,RATE:SECONDS,...``; raises ValueError with an example."""
        steps = []
        for part in text.split(","):
            rate, separator, seconds = part.strip().partition(":")
            try:
                if not separator:
                    raise ValueError
                steps.append(Step(float(rate), float(seconds)))
            except ValueError:
                raise ValueError(
                    f"bad load step {part.strip()!r}: write RATE:SECONDS steps separated by "
                    "commas, e.g. 20:10,100:20,0:10"
                ) from None
        return cls(steps)

    @classmethod
    def from_record(cls, path: Path) -> RateTrace:
        """The rate a recorded run saw, tick by tick: its offered rate where every tick
        knows it, else its measured arrival rate. Both describe the poll before a tick."""
        ticks = read_ticks(path)
        if len(ticks) < 2:
            raise ValueError(f"{path} has fewer than two ticks; nothing to replay")
        known = all(tick.offered is not None for tick in ticks[1:])
        steps = []
        for previous, tick in itertools.pairwise(ticks):
            if tick.time > previous.time:
                rate = tick.offered if known and tick.offered is not None else tick.arrival_rate
                steps.append(Step(rate, tick.time - previous.time))
        return cls(steps)

    def __str__(self) -> str:
        return ",".join(f"{step.rate:g}:{step.seconds:g}" for step in self.steps)

    @property
    def duration(self) -> float:
        """Seconds until the end of the last step."""
        return self._ends[-1]

    @property
    def peak(self) -> float:
        """The highest rate of the trace, msg/s."""
        return max(step.rate for step in self.steps)

    def intervals(self) -> list[tuple[float, float, float]]:
        """Each step as ``(start, end, rate)``, seconds and msg/s."""
        starts = [0.0, *self._ends[:-1]]
        return [
            (start, end, step.rate)
            for start, end, step in zip(starts, self._ends, self.steps, strict=True)
        ]

    def rate_at(self, moment: float) -> float:
        """The rate at ``moment`` seconds; 0 before the start and after the end."""
        if moment < 0 or moment >= self.duration:
            return 0.0
        return self.steps[bisect.bisect_right(self._ends, moment)].rate

    def messages_by(self, moment: float) -> float:
        """Messages sent from time 0 to ``moment`` at this rate (not rounded)."""
        if moment <= 0:
            return 0.0
        if moment >= self.duration:
            return self._totals[-1]
        index = bisect.bisect_right(self._ends, moment)
        start = self._ends[index - 1] if index else 0.0
        done = self._totals[index - 1] if index else 0.0
        return done + self.steps[index].rate * (moment - start)
