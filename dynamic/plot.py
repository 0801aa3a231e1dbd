"""The dynamic-scaling figure: rates, backlog and workers against time, from ticks.

The same figure is drawn for a real run (``python -m dynamic.TestMaster``) and a
simulated one (``python -m dynamic.simulate``), so the two can be compared side by side;
``python -m dynamic.plot results/dynamic.csv`` redraws it from a saved record.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # Files only: no display needed, and none on a server.
import matplotlib.pyplot as plt

from dynamic.record import Tick, read_ticks


def plot_ticks(ticks: Sequence[Tick], path: Path, title: str) -> None:
    """Draw three panels sharing the time axis and save them as ``path`` (PNG)."""
    if not ticks:
        raise ValueError("no ticks to plot")
    times = [tick.time for tick in ticks]
    figure, (rates, backlog, workers) = plt.subplots(
        3, 1, sharex=True, figsize=(10, 8), height_ratios=[3, 2, 3], constrained_layout=True
    )
    figure.suptitle(title)

    if any(tick.offered is not None for tick in ticks):
        offered = [float("nan") if tick.offered is None else tick.offered for tick in ticks]
        rates.step(times, offered, where="pre", color="tab:gray", linestyle="--", label="offered")
    # A tick's rates were measured over the poll that ends at it.
    rates.step(
        times,
        [tick.arrival_rate for tick in ticks],
        where="pre",
        color="tab:blue",
        label="measured lambda",
    )
    rates.set_ylabel("messages / s")
    rates.legend(loc="upper right")

    backlog.plot(
        times, [tick.backlog for tick in ticks], color="tab:red", label="B = ready + unacked"
    )
    backlog.plot(
        times, [tick.ready for tick in ticks], color="tab:orange", linewidth=0.8, label="ready"
    )
    backlog.set_ylabel("messages")
    backlog.legend(loc="upper right")

    # Three step lines: what the formula says, what the master wants after its window,
    # and what the broker sees consuming.
    worker_lines = (
        ("recommended", {"color": "tab:gray", "linewidth": 0.8}, "formula (before the window)"),
        ("wanted", {"color": "tab:green", "linewidth": 2}, "workers wanted"),
        ("consumers", {"color": "tab:purple", "linestyle": ":"}, "consuming (broker's count)"),
    )
    for attribute, style, label in worker_lines:
        values = [getattr(tick, attribute) for tick in ticks]
        workers.step(times, values, where="post", label=label, **style)
    workers.set_ylabel("workers")
    workers.set_xlabel("time (s)")
    workers.set_ylim(bottom=0)
    workers.legend(loc="upper right")

    for axis in (rates, backlog, workers):
        axis.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    """Redraw a figure from a CSV record."""
    parser = argparse.ArgumentParser(
        prog="python -m dynamic.plot", description="Draw the dynamic-scaling figure of a record."
    )
    parser.add_argument("csv", type=Path, help="a record, e.g. results/dynamic.csv")
    parser.add_argument("--out", type=Path, help="PNG to write (default: the CSV's name, .png)")
    parser.add_argument("--title", default="Dynamic scaling", help="figure title")
    args = parser.parse_args(argv)
    try:
        ticks = read_ticks(args.csv)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out or args.csv.with_suffix(".png")
    plot_ticks(ticks, out, args.title)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
