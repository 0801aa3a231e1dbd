"""The master: read the queue, measure lambda, ask the policy, start or stop workers.

:class:`Master` knows only an :class:`~dynamic.meter.Observer` and a
:class:`~dynamic.launcher.WorkerLauncher`, so ``python -m dynamic.Main`` (RabbitMQ and
local processes) and ``python -m dynamic.simulate`` (a queue model) run the same code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from dynamic.launcher import WorkerLauncher
from dynamic.meter import ArrivalMeter, Observer
from dynamic.policy import ScalingPolicy
from dynamic.record import Tick

log = logging.getLogger("dynamic.master")

OfferedRate = Callable[[], float | None]


class Stopper(Protocol):
    """A stop request: a :class:`~middlewares.runtime.StopSignal` or a ``threading.Event``."""

    def is_set(self) -> bool:
        """True once a stop was asked for."""
        ...

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until a stop is asked for or ``timeout`` passes."""
        ...


class Master:
    """One :meth:`tick` per poll: observe, measure, decide, act, record.

    Parameters:
        observer: Reads the task queue.
        launcher: Starts and stops workers.
        policy: Turns backlog and arrival rate into a worker count.
        offered: The rate clients really sent since the previous tick, when something
            knows it (the load generator, the simulator); called once per tick.
    """

    def __init__(
        self,
        observer: Observer,
        launcher: WorkerLauncher,
        policy: ScalingPolicy,
        offered: OfferedRate | None = None,
    ) -> None:
        self._observer = observer
        self._launcher = launcher
        self._policy = policy
        self._offered = offered
        self._meter = ArrivalMeter()
        self._start: float | None = None
        self._acked_at_start = 0.0

    def tick(self) -> Tick:
        """Observe the queue once, apply the policy's decision and return what happened."""
        reading = self._observer.observe()
        if self._start is None:
            self._start, self._acked_at_start = reading.time, reading.acked
        arrival_rate = self._meter.update(reading)
        running = len(self._launcher.workers())
        wanted = self._policy.decide(reading.time, reading.backlog, arrival_rate, running)
        self._launcher.scale_to(wanted)
        return Tick(
            time=reading.time - self._start,
            offered=self._offered() if self._offered else None,
            arrival_rate=arrival_rate,
            backlog=reading.backlog,
            ready=reading.ready,
            unacked=reading.unacked,
            acked=round(reading.acked - self._acked_at_start),
            recommended=self._policy.recommend(reading.backlog, arrival_rate),
            wanted=wanted,
            running=running,
            consumers=reading.consumers,
        )


def describe(tick: Tick) -> str:
    """One log line per tick."""
    offered = "" if tick.offered is None else f"offered {tick.offered:6.1f}  "
    return (
        f"t={tick.time:6.1f}s  {offered}lambda {tick.arrival_rate:6.1f}/s  "
        f"B {tick.backlog:5d} (ready {tick.ready}, unacked {tick.unacked})  "
        f"workers {tick.running:2d} -> {tick.wanted:2d} (formula {tick.recommended}, "
        f"consumers {tick.consumers})"
    )


def run_ticks(
    master: Master,
    stop: Stopper,
    poll: float,
    on_tick: Callable[[Tick], None],
    until: Callable[[], bool] = lambda: False,
) -> None:
    """Tick every ``poll`` seconds on a fixed cadence until ``stop`` is set or ``until()``.

    A slow tick does not shift the ones after it; ticks missed entirely are skipped.
    """
    next_tick = time.monotonic()
    while not stop.is_set() and not until():
        on_tick(master.tick())
        next_tick += poll
        now = time.monotonic()
        if next_tick < now:
            log.warning("a tick took longer than the %.1f s poll; skipping ahead", poll)
            next_tick = now + poll
        stop.wait(next_tick - now)
