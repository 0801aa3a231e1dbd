"""One record per master tick, written to CSV as it happens and read back for plots."""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Self


@dataclass(frozen=True)
class Tick:
    """What the master saw and did at one poll.

    Attributes:
        time: Seconds since the master started.
        offered: Rate the clients really sent since the previous tick, msg/s, as the load
            generator counted it (the simulator: its trace's mean over the poll); None
            when unknown (``python -m dynamic.Main`` cannot know what clients send).
        arrival_rate: ``lambda`` measured since the previous tick, msg/s.
        backlog: ``B`` = ready + unacked, messages.
        ready: Messages waiting in the queue.
        unacked: Messages held by workers, not yet acknowledged.
        acked: Messages acknowledged since the master started (cumulative).
        recommended: The clamped formula's answer at this tick, before the window.
        wanted: Workers the policy decided to run.
        running: Workers running when the reading was taken (started, not told to stop).
        consumers: Consumers of the task queue as the broker counts them.
    """

    time: float
    offered: float | None
    arrival_rate: float
    backlog: int
    ready: int
    unacked: int
    acked: int
    recommended: int
    wanted: int
    running: int
    consumers: int

    def as_row(self) -> list[str]:
        """The tick as CSV cells: times and rates to the millisecond, None as empty."""
        return [_cell(value) for value in astuple(self)]


COLUMNS = [field.name for field in fields(Tick)]


def _cell(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


class TickWriter:
    """Appends ticks to a CSV file, flushing each one so a crashed run keeps its data."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        self._csv.writerow(COLUMNS)

    def write(self, tick: Tick) -> None:
        """Append one tick."""
        self._csv.writerow(tick.as_row())
        self._file.flush()

    def close(self) -> None:
        """Close the file. Safe to call twice."""
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_ticks(path: Path) -> list[Tick]:
    """The ticks of a CSV written by :class:`TickWriter`.

    Raises:
        ValueError: naming the file when its columns are not the ones written here.
    """
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        if reader.fieldnames != COLUMNS:
            raise ValueError(f"{path} is not a dynamic-scaling record: columns {reader.fieldnames}")
        return [_parse(row) for row in reader]


def _parse(row: dict[str, str]) -> Tick:
    return Tick(
        time=float(row["time"]),
        offered=float(row["offered"]) if row["offered"] else None,
        arrival_rate=float(row["arrival_rate"]),
        backlog=int(row["backlog"]),
        ready=int(row["ready"]),
        unacked=int(row["unacked"]),
        acked=int(row["acked"]),
        recommended=int(row["recommended"]),
        wanted=int(row["wanted"]),
        running=int(row["running"]),
        consumers=int(row["consumers"]),
    )


def write_run_info(path: Path, info: dict[str, object]) -> None:
    """Save a run's parameters and outcome as JSON beside its CSV, for the simulator."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_run_info(path: Path) -> dict[str, object]:
    """The JSON written by :func:`write_run_info`; raises ValueError naming the file."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read run parameters from {path}: {error}") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path} does not hold a JSON object of run parameters")
    return info


def measured_startup(ticks: list[Tick], poll: float) -> float | None:
    """How long new workers took to consume, from a run's ticks (median, seconds).

    For each tick that started workers, the time until the broker counted that many
    consumers, less half a poll (the moment in between two ticks is not observed).
    None when the run never started a worker.
    """
    delays = []
    for index, tick in enumerate(ticks):
        if tick.wanted > tick.running:
            ready = next((t for t in ticks[index + 1 :] if t.consumers >= tick.wanted), None)
            if ready is not None:
                delays.append(max(0.0, ready.time - tick.time - poll / 2))
    return statistics.median(delays) if delays else None
