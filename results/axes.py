"""How every figure of the report lays out its axes, legends and captions.

Latency axes are logarithmic with plain millisecond ticks (0.3, 1, 2, 5), client counts
sit on a log₂ axis (1, 2, 4, 8 equally spaced), legends go beside the plot so they never
hide a point, and every figure gets a number and a caption that says what to look at.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter


def _plain(value: float, _position: object = None) -> str:
    """``0.3``, ``1``, ``20``: a tick label without powers of ten."""
    return f"{value:g}" if value < 1e4 else f"{value:,.0f}"


def milliseconds_axis(axes: Axes) -> None:
    """A log y axis of latencies in ms with ticks at 1, 2 and 5 of every decade."""
    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(_plain))
    axes.yaxis.set_minor_formatter(NullFormatter())


def clients_axis(axes: Axes, counts: Iterable[float]) -> None:
    """A log₂ x axis with a tick at every client count measured."""
    ticks = sorted({float(c) for c in counts})
    axes.set_xscale("log", base=2)
    axes.xaxis.set_major_locator(FixedLocator(ticks))
    axes.xaxis.set_major_formatter(FuncFormatter(_plain))
    axes.xaxis.set_minor_formatter(NullFormatter())
    if len(ticks) == 1:
        axes.set_xlim(ticks[0] / 1.5, ticks[0] * 1.5)
    else:
        axes.set_xlim(ticks[0] / 1.25, ticks[-1] * 1.25)


def legend_outside(axes: Axes) -> None:
    """The legend to the right of the plot, where it cannot cover a point."""
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def save(figure: Figure, directory: Path, name: str) -> Path:
    """Save ``figure`` as PNG and SVG under ``directory``; returns the PNG's path. The
    bounding box grows to hold a legend placed outside the axes."""
    directory.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    for suffix in ("png", "svg"):
        figure.savefig(directory / f"{name}.{suffix}", dpi=120, bbox_inches="tight")
    return directory / f"{name}.png"


class FigureList:
    """Numbers the report's figures in the order they appear and writes their captions."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0

    def add(self, path: Path, caption: str) -> str:
        """Markdown for figure ``path`` (relative to the report) with its number and
        ``caption``."""
        self.count += 1
        link = path.relative_to(self.directory).as_posix()
        return f"![Figure {self.count}]({link})\n\n*Figure {self.count}. {caption}*"
