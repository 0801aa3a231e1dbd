"""What the master observes of a work queue, and the arrival rate derived from it.

Arrivals are not counted where they happen (any client may publish tasks), but from
conservation of messages: every task that arrived is either still in the queue (ready or
unacknowledged) or has been acknowledged. So between two readings

    arrivals = (backlog_now - backlog_before) + (acked_now - acked_before)

and ``lambda`` is arrivals divided by the time between the readings. Only the last
reading is kept, so nothing grows with the length of a run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Reading:
    """One observation of the task queue.

    Attributes:
        time: When it was taken, in seconds (any clock that only moves forward).
        ready: Messages in the queue not yet delivered to a worker.
        unacked: Messages delivered to workers and not yet acknowledged.
        acked: Messages acknowledged since counting began (cumulative); a float because
            workers' counters are interpolated to :attr:`time`.
        consumers: Workers consuming from the queue, as the broker sees them.
    """

    time: float
    ready: int
    unacked: int
    acked: float
    consumers: int

    @property
    def backlog(self) -> int:
        """``B``: ready plus unacknowledged messages."""
        return self.ready + self.unacked


class Observer(Protocol):
    """Something that can read the task queue: the broker, or the simulator's model."""

    def observe(self) -> Reading:
        """Take one reading now."""
        ...


class ArrivalMeter:
    """``lambda`` in messages per second, from each reading and the one before it."""

    def __init__(self) -> None:
        self._previous: Reading | None = None

    def update(self, reading: Reading) -> float:
        """The arrival rate since the previous reading; 0.0 for the first reading.

        A negative difference (tasks that expired or were purged by an operator) would
        mean a negative rate, which is clamped to 0.
        """
        previous, self._previous = self._previous, reading
        if previous is None or reading.time <= previous.time:
            return 0.0
        arrivals = (reading.backlog - previous.backlog) + (reading.acked - previous.acked)
        return max(0.0, arrivals / (reading.time - previous.time))


class RateSince:
    """The rate at which a count grows, between one call and the next (0.0 at the first).

    The master calls it once per tick, so it covers the same poll as lambda: the load
    generator uses it for what it really sent, the simulator for its model's arrivals.
    """

    def __init__(self, count: Callable[[], float], clock: Callable[[], float]) -> None:
        self._count = count
        self._clock = clock
        self._previous: tuple[float, float] | None = None

    def __call__(self) -> float:
        sample = (self._clock(), self._count())
        previous, self._previous = self._previous, sample
        if previous is None or sample[0] <= previous[0]:
            return 0.0
        return (sample[1] - previous[1]) / (sample[0] - previous[0])
