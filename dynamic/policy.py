"""The scaling policy: how many workers a work queue needs, and when to change the count.

The formula is ``N = ceil((B + lambda * T) / C)``:

* ``B`` (messages): the backlog, ready plus unacknowledged messages of the task queue.
* ``lambda`` (messages per second): the rate at which tasks arrive.
* ``T`` (seconds): the target time to drain; ``B + lambda * T`` is the work that must be
  done within the next ``T`` seconds to empty the queue while new tasks keep arriving.
* ``C`` (messages per worker per ``T``): what one worker handles in ``T`` seconds, i.e. its
  measured rate in messages per second times ``T``, so that the units cancel out.

Around the formula sit the rules production autoscalers share (the Kubernetes HPA, KEDA):
the result is clamped to ``[min_workers, max_workers]``, a higher count is applied at once,
and a lower count only when every recommendation of the last ``window`` seconds was lower,
so a noisy steady rate does not make workers come and go.

Everything here is pure: the caller passes the time, so the real master and the
simulator run the very same code.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

# A backlog plus arrivals that is an exact multiple of C must not round up because of
# floating-point noise, e.g. (0.1 + 0.2) / 0.3 == 1.0000000000000002.
_ROUNDING_SLACK = 1e-9


def workers_needed(backlog: float, arrival_rate: float, target_time: float, capacity: float) -> int:
    """``ceil((B + lambda * T) / C)``: the workers that drain the queue in ``T`` seconds.

    Parameters:
        backlog: ``B``, messages waiting or in progress (ready + unacknowledged).
        arrival_rate: ``lambda``, messages arriving per second.
        target_time: ``T``, seconds in which the backlog should be gone.
        capacity: ``C``, messages one worker handles in ``T`` seconds.

    Returns:
        The unclamped number of workers, 0 when there is nothing to do.

    Raises:
        ValueError: when an input is negative or ``T`` or ``C`` is not positive.
    """
    if backlog < 0 or arrival_rate < 0:
        raise ValueError(f"backlog and arrival rate must be >= 0, got {backlog}, {arrival_rate}")
    if target_time <= 0 or capacity <= 0:
        raise ValueError(f"T and C must be positive, got T={target_time}, C={capacity}")
    work = backlog + arrival_rate * target_time
    return max(0, math.ceil(work / capacity - _ROUNDING_SLACK))


@dataclass(frozen=True)
class PolicyConfig:
    """The parameters of :class:`ScalingPolicy`.

    Attributes:
        capacity: ``C``, messages one worker handles in ``target_time`` seconds.
        target_time: ``T``, seconds in which the backlog should be drained.
        min_workers: Fewest workers to keep, even with no load.
        max_workers: Most workers to run, whatever the load.
        window: Seconds of recommendations that must all be lower before scaling down.
    """

    capacity: float
    target_time: float = 2.0
    min_workers: int = 1
    max_workers: int = 8
    window: float = 10.0

    def __post_init__(self) -> None:
        if not self.capacity > 0:
            raise ValueError(f"capacity C must be positive, got {self.capacity}")
        if not self.target_time > 0:
            raise ValueError(f"target time T must be positive, got {self.target_time}")
        if self.min_workers < 0:
            raise ValueError(f"min workers must be >= 0, got {self.min_workers}")
        if self.max_workers < max(1, self.min_workers):
            raise ValueError(
                f"max workers must be >= 1 and >= min workers ({self.min_workers}), "
                f"got {self.max_workers}"
            )
        if self.window < 0:
            raise ValueError(f"window must be >= 0 seconds, got {self.window}")

    @property
    def worker_rate(self) -> float:
        """Messages per second one worker handles: ``C / T``."""
        return self.capacity / self.target_time


class ScalingPolicy:
    """Turns measurements into a worker count: the formula, clamps and a stabilization window.

    Call :meth:`decide` once per poll with the time of the measurement.
    """

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        # (time, clamped recommendation), oldest first; only the window is kept.
        self._history: deque[tuple[float, int]] = deque()
        self._started: float | None = None

    def recommend(self, backlog: float, arrival_rate: float) -> int:
        """The formula's answer clamped to ``[min_workers, max_workers]``; no memory."""
        config = self.config
        needed = workers_needed(backlog, arrival_rate, config.target_time, config.capacity)
        return min(config.max_workers, max(config.min_workers, needed))

    def decide(self, now: float, backlog: float, arrival_rate: float, current: int) -> int:
        """The worker count to run from now on.

        Parameters:
            now: Time of the measurement, in seconds on any clock that only moves forward.
            backlog: ``B`` in messages.
            arrival_rate: ``lambda`` in messages per second.
            current: Workers running now.

        Returns:
            The recommendation when it is not lower than ``current`` (scale up at once);
            otherwise ``current`` (at most ``max_workers``) until a whole window of lower
            recommendations has been seen, then the highest of them.
        """
        recommendation = self.recommend(backlog, arrival_rate)
        if self._started is None:
            self._started = now
        self._history.append((now, recommendation))
        horizon = now - self.config.window
        while self._history[0][0] < horizon:
            self._history.popleft()
        if recommendation >= current:
            return recommendation
        # Running more than the maximum is never right, whatever the history says.
        current = min(current, self.config.max_workers)
        # Not enough history yet to know that every recommendation of a window was lower.
        if now - self._started < self.config.window:
            return current
        highest = max(value for _, value in self._history)
        return min(current, highest)
