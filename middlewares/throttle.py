"""The portable CPU cap: a process that holds itself to a fraction of one core.

Needs no privileges, so the speedup study runs on any laptop. The launcher sets
:data:`SELF_CAP_ENV` in a capped process's environment, and every service process calls
:func:`throttle_from_environment` once at start (from ``runtime.run_main``).

How the whole process is paused: a throttle thread keeps a token bucket of CPU time
(``fraction`` CPU-seconds earned per wall-second, at most one window's worth saved up)
and compares it with the process's CPU time, all threads together. When the process has
spent more than it earned, the throttle thread sleeps *while holding the GIL*, through a
``ctypes.PyDLL`` call to ``usleep``: no other Python thread of the process can run until
the debt is repaid. A plain ``time.sleep`` would release the GIL and pause only the
throttle thread itself. Debt carries over from one check to the next, so the long-run
share is exact even though the throttle thread needs a few ms to get the GIL back from a
busy thread.

Each pause also earns the process half a window's worth of CPU to run on before the
next check. Pausing only until the debt is paid would leave nothing to run on: the
throttle thread would hand the GIL back and forth thousands of times a second, in
pauses of a tenth of a millisecond, and that hand-off cost a Redis node about a fifth
of its CPU.

Limits: code running with the GIL released (a C extension crunching numbers) is not
paused, and a child process of a capped process caps itself separately. Neither happens
in this project's services.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable

#: Environment variable carrying the fraction of one core a process may use.
SELF_CAP_ENV = "INSULTBENCH_SELF_CPU_CAP"
#: The accounting window: at most this much wall time's worth of CPU can be saved up, so
#: the share holds over any window of about this length.
WINDOW_S = 0.1
#: Shortest sleep between two checks, so an idle process costs almost nothing.
MIN_CHECK_S = 0.005
#: Longest single GIL-holding pause (``usleep`` takes at most about one second).
MAX_PAUSE_S = 0.5


class ThrottleError(ValueError):
    """The cap asked for is not a fraction this process can hold itself to."""


def parse_fraction(text: str, source: str) -> float:
    """A fraction of one core in (0, 1], or :class:`ThrottleError` naming ``source``."""
    try:
        value = float(text)
    except ValueError:
        raise ThrottleError(f"{source}={text!r} is not a number") from None
    if not 0 < value <= 1:
        raise ThrottleError(f"{source}={text!r}: give a fraction of one core in (0, 1]")
    return value


def _gil_holding_sleep() -> Callable[[float], None]:
    """``sleep(seconds)`` that keeps the GIL, pausing every Python thread of the process."""
    # PyDLL calls do not release the GIL, unlike CDLL calls.
    usleep = ctypes.PyDLL(None).usleep
    usleep.argtypes = [ctypes.c_uint]
    usleep.restype = ctypes.c_int

    def sleep(seconds: float) -> None:
        usleep(int(seconds * 1_000_000))

    return sleep


class SelfThrottle:
    """Holds this process to ``fraction`` of one core over windows of ``window`` s.

    ``cpu_clock`` is the process's CPU time in seconds (all threads); the clocks and the
    pause are parameters so the accounting can be tested without real time.
    """

    def __init__(
        self,
        fraction: float,
        window: float = WINDOW_S,
        cpu_clock: Callable[[], float] = time.process_time,
        wall_clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], None] | None = None,
    ) -> None:
        if not 0 < fraction <= 1:
            raise ThrottleError(f"a self cap must be a fraction in (0, 1], got {fraction}")
        self.fraction = fraction
        self.capacity = fraction * window
        #: CPU seconds a pause earns beyond the debt: what the process runs on next.
        self.slice = self.capacity / 2
        self._cpu_clock = cpu_clock
        self._wall_clock = wall_clock
        self._pause = pause or _gil_holding_sleep()
        self._tokens = self.capacity
        self._last_wall = wall_clock()
        self._last_cpu = cpu_clock()

    def step(self) -> float:
        """Account for the CPU used since the last step; pause (holding the GIL) while in
        debt. Returns how long to sleep, releasing the GIL, before the next step."""
        wall, cpu = self._wall_clock(), self._cpu_clock()
        earned = self.fraction * (wall - self._last_wall)
        self._tokens = min(self.capacity, self._tokens + earned - (cpu - self._last_cpu))
        self._last_wall, self._last_cpu = wall, cpu
        if self._tokens < 0:
            self._pause(min(MAX_PAUSE_S, (self.slice - self._tokens) / self.fraction))
            return self.slice
        # With the GIL, the process's Python threads burn at most one core between two
        # steps, so sleeping as long as the saved-up tokens cannot overspend them by much.
        return max(MIN_CHECK_S, self._tokens)

    def start(self) -> threading.Thread:
        """Run the throttle on a daemon thread for the rest of the process's life."""

        def loop() -> None:
            while True:
                time.sleep(self.step())

        thread = threading.Thread(target=loop, name="cpu-self-throttle", daemon=True)
        thread.start()
        return thread


def throttle_from_environment() -> SelfThrottle | None:
    """Start the self-throttle when :data:`SELF_CAP_ENV` asks for one; raises
    :class:`ThrottleError` for a value that is not a fraction in (0, 1]."""
    raw = os.environ.get(SELF_CAP_ENV)
    if not raw:
        return None
    throttle = SelfThrottle(parse_fraction(raw, SELF_CAP_ENV))
    throttle.start()
    return throttle
