"""CPU and memory of the processes involved in a run, read with psutil.

CPU is measured exactly over the measurement window (CPU seconds at its end minus at its
start, per process); memory is the largest resident set seen by periodic samples. Groups
are the service processes of the deployment, the load-generating client processes, and
the broker servers the requests cross (read only: they are shared with everyone on the
machine, so their figures include other people's load).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil


def descendants(pids: list[int]) -> list[int]:
    """``pids`` and every process below them."""
    found: list[int] = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            found.append(pid)
            found += [child.pid for child in process.children(recursive=True)]
    return sorted(set(found))


def broker_pids(names: tuple[str, ...]) -> list[int]:
    """Pids of the running processes called one of ``names`` (a broker's servers, as its
    backend names them: ``redis-server``, ``beam.smp``)."""
    return [
        process.pid for process in psutil.process_iter(["name"]) if process.info["name"] in names
    ]


@dataclass
class _Watched:
    process: psutil.Process
    role: str
    cpu_start: float
    rss_max: int = 0


@dataclass(frozen=True)
class ProcessUsage:
    """One process over the window: CPU as a percentage of one core, peak memory."""

    pid: int
    role: str
    cpu_s: float
    cpu_pct: float
    rss_mb: float


@dataclass(frozen=True)
class GroupUsage:
    """A group of processes over the window.

    Attributes:
        cpu_pct: CPU of all processes together, in percent of one core (200 = 2 cores).
        cpu_max_pct: CPU of the busiest single process, in percent of one core.
        rss_mb: Peak of the summed resident memory, in MiB.
        processes: Each process, for per-node load.
    """

    cpu_pct: float
    cpu_max_pct: float
    rss_mb: float
    processes: tuple[ProcessUsage, ...]


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _role(process: psutil.Process) -> str:
    # ``python -m middlewares.redis.filter_worker ...`` -> ``middlewares.redis.filter_worker``.
    with contextlib.suppress(psutil.Error):
        command = process.cmdline()
        if "-m" in command[:-1]:
            return command[command.index("-m") + 1]
        return process.name()
    return "?"


class ResourceSampler:
    """Measures groups of processes over one window: ``begin()``, ``sample()``…, ``end()``.

    ``groups`` maps a group name to a function giving its pids; it is called at
    ``begin()``, so processes that appear later (a restarted worker) are not counted.
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self._groups = groups
        self._watched: dict[str, list[_Watched]] = {}
        self._rss_peak: dict[str, int] = {}
        self._started = 0.0
        self._machine_start: Any = None

    def begin(self) -> None:
        """Start the window: read every process's CPU time and the machine's."""
        self._started = time.monotonic()
        self._machine_start = psutil.cpu_times()
        for group, pids in self._groups.items():
            watched = []
            for pid in pids():
                with contextlib.suppress(psutil.Error):
                    process = psutil.Process(pid)
                    watched.append(_Watched(process, _role(process), _cpu(process)))
            self._watched[group] = watched
            self._rss_peak[group] = 0
        self.sample()

    def sample(self) -> None:
        """Read the resident memory of every watched process; call it every ~0.5 s."""
        for group, watched in self._watched.items():
            total = 0
            for entry in watched:
                with contextlib.suppress(psutil.Error):
                    rss = entry.process.memory_info().rss
                    entry.rss_max = max(entry.rss_max, rss)
                    total += rss
            self._rss_peak[group] = max(self._rss_peak[group], total)

    def end(self) -> tuple[dict[str, GroupUsage], float]:
        """End the window; returns the usage of each group and the machine's busy CPU
        in percent of all its cores."""
        self.sample()
        elapsed = max(1e-9, time.monotonic() - self._started)
        usage: dict[str, GroupUsage] = {}
        for group, watched in self._watched.items():
            processes = []
            for entry in watched:
                with contextlib.suppress(psutil.Error):
                    seconds = _cpu(entry.process) - entry.cpu_start
                    processes.append(
                        ProcessUsage(
                            pid=entry.process.pid,
                            role=entry.role,
                            cpu_s=round(seconds, 3),
                            cpu_pct=round(100 * seconds / elapsed, 1),
                            rss_mb=round(entry.rss_max / 2**20, 1),
                        )
                    )
            usage[group] = GroupUsage(
                cpu_pct=round(sum(p.cpu_pct for p in processes), 1),
                cpu_max_pct=max((p.cpu_pct for p in processes), default=0.0),
                rss_mb=round(self._rss_peak[group] / 2**20, 1),
                processes=tuple(processes),
            )
        return usage, self._machine_busy_pct()

    def _machine_busy_pct(self) -> float:
        start, now = self._machine_start, psutil.cpu_times()
        if start is None:
            return float("nan")
        total = sum(now) - sum(start)
        idle = (now.idle + getattr(now, "iowait", 0)) - (start.idle + getattr(start, "iowait", 0))
        return round(100 * (1 - idle / total), 1) if total > 0 else float("nan")
