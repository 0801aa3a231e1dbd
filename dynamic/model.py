"""A work queue and its workers as a fluid model, for the simulator: no broker, no processes.

The queue holds ``content`` messages (ready + unacknowledged). Each worker that has
finished starting serves one message at a time at ``worker_rate`` msg/s, so the pool
finishes ``worker_rate x min(workers, content)`` msg/s: a queue with fewer messages than
workers has idle workers, and a long queue keeps all of them busy. The unacknowledged
messages are those the workers hold, at most ``prefetch`` each. A stopped worker leaves
at once (a real one finishes one task first, well under a poll).

Each step serves ``min(worker_rate x workers x step, content x (1 - exp(-worker_rate x
step)))``: the first term while every worker is busy, the second (the exact solution
while some are idle) otherwise. Neither can overshoot, so the step need not be short
against a service time, and 500 workers at 100,000 msg/s cost no more than 3 at 50.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from dynamic.launcher import WorkerLauncher
from dynamic.meter import Reading
from dynamic.trace import RateTrace


class QueueModel:
    """The queue and the workers; also the master's :class:`~dynamic.meter.Observer`."""

    def __init__(
        self, worker_rate: float, prefetch: int = 1, startup: float = 0.5, step: float = 0.01
    ) -> None:
        if worker_rate <= 0 or prefetch < 1 or startup < 0 or step <= 0:
            raise ValueError("need worker_rate > 0, prefetch >= 1, startup >= 0 and step > 0")
        self.worker_rate = worker_rate
        self.prefetch = prefetch
        self.startup = startup
        self.step = step
        self.time = 0.0
        self._content = 0.0
        self._acked = 0.0
        #: Messages that have arrived so far (cumulative).
        self.arrived = 0.0
        # Worker id -> the moment it starts consuming, in start order.
        self._workers: dict[str, float] = {}
        self._ids = (f"sim-worker-{n}" for n in itertools.count(1))

    def advance(self, seconds: float, trace: RateTrace) -> None:
        """Let ``seconds`` pass with arrivals at the trace's rate."""
        end = self.time + seconds
        consumers = self.consumers
        next_start = min((t for t in self._workers.values() if t > self.time), default=math.inf)
        while self.time < end - 1e-12:
            if self.time >= next_start:
                consumers = self.consumers
                next_start = min(
                    (t for t in self._workers.values() if t > self.time), default=math.inf
                )
            step = min(self.step, end - self.time)
            arrivals = trace.rate_at(self.time) * step
            self._content += arrivals
            self.arrived += arrivals
            served = min(
                self.worker_rate * consumers * step,
                self._content * -math.expm1(-self.worker_rate * step),
            )
            self._content -= served
            self._acked += served
            self.time += step
        # Exactly the end, so ticks fall on whole polls and steps of the trace line up.
        self.time = end

    @property
    def consumers(self) -> int:
        """Workers that have finished starting."""
        return sum(1 for ready_at in self._workers.values() if ready_at <= self.time)

    def observe(self) -> Reading:
        """The reading a master would take now."""
        unacked = min(self._content, self.consumers * self.prefetch)
        return Reading(
            time=self.time,
            ready=round(self._content - unacked),
            unacked=round(unacked),
            acked=self._acked,
            consumers=self.consumers,
        )

    def add_worker(self, warm: bool = False) -> str:
        """A new worker, consuming after the start-up delay (at once if ``warm``)."""
        worker = next(self._ids)
        self._workers[worker] = self.time + (0.0 if warm else self.startup)
        return worker

    def remove_worker(self, worker: str) -> None:
        """The worker stops consuming now."""
        del self._workers[worker]

    def workers(self) -> list[str]:
        """Every worker, started or starting, oldest first."""
        return list(self._workers)


class SimulatedLauncher(WorkerLauncher):
    """The launcher interface over :class:`QueueModel`."""

    def __init__(self, model: QueueModel) -> None:
        self._model = model

    def start(self, count: int) -> list[str]:
        """Add ``count`` workers to the model."""
        return [self._model.add_worker() for _ in range(count)]

    def stop(self, worker_ids: Sequence[str]) -> None:
        """Remove these workers from the model."""
        for worker in worker_ids:
            self._model.remove_worker(worker)

    def workers(self) -> list[str]:
        """The model's workers, oldest first."""
        return self._model.workers()

    def close(self) -> None:
        """Remove every worker."""
        self.stop(self._model.workers())
