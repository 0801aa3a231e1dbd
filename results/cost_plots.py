"""Figures of what an operation costs: CPU µs per operation by kind of process, and
what the stronger delivery guarantee costs each middleware (ops/s and CPU per operation
side by side). Both are drawn only from rows that carry the CPU-per-operation columns.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from middlewares.registry import MIDDLEWARES
from results.axes import legend_outside, save
from results.profiles import profile

#: The parts of one operation's CPU, bottom to top of a stacked bar.
CPU_PARTS = (
    ("cpu_us_per_op_client", "clients", "#8c8c8c"),
    ("cpu_us_per_op_service", "service processes", "#4c72b0"),
    ("cpu_us_per_op_broker", "broker", "#dd8452"),
)
#: The guarantees, in the order their bars stand, and how each is drawn.
GUARANTEE_STYLES = {"at-least-once": "", "at-most-once": "///"}


def _ordered(names: pd.Series) -> list[str]:
    present = set(names)
    return [m for m in MIDDLEWARES if m in present] + sorted(present - set(MIDDLEWARES))


def at_largest_clients(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of each workload at its largest client count."""
    widest = summary.groupby("workload")["clients"].transform("max")
    return summary[summary["clients"] == widest]


def cpu_per_operation(summary: pd.DataFrame, directory: Path) -> Path | None:
    """One panel per workload at its largest client count: the CPU µs one operation
    cost, stacked by kind of process, per middleware."""
    if "cpu_us_per_op_total" not in summary or summary["cpu_us_per_op_total"].isna().all():
        return None
    top = at_largest_clients(summary)
    workloads = list(top["workload"].unique())
    figure = Figure(figsize=(max(5.0, 2.6 * len(workloads)) + 1.6, 3.8))
    panels = figure.subplots(1, len(workloads), squeeze=False)[0]
    for axes, workload in zip(panels, workloads, strict=True):
        rows = top[top["workload"] == workload].set_index("middleware")
        names = _ordered(pd.Series(rows.index))
        bottoms = [0.0] * len(names)
        for column, label, colour in CPU_PARTS:
            values = [float(rows.loc[m, column]) if pd.notna(rows.loc[m, column]) else 0.0
                      for m in names]  # fmt: skip
            axes.bar(names, values, bottom=bottoms, color=colour, label=label)
            bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
        axes.set_title(f"{workload}, {int(rows['clients'].iloc[0])} clients", fontsize=10)
        axes.tick_params(axis="x", labelrotation=30)
        axes.grid(alpha=0.3, axis="y")
    panels[0].set_ylabel("CPU µs per completed operation")
    legend_outside(panels[-1])
    return save(figure, directory, "cpu-per-operation")


def guarantee_cost(summary: pd.DataFrame, directory: Path) -> Path | None:
    """Per workload measured under both guarantees, at its largest client count: ops/s
    (left) and total CPU µs per operation (right), per middleware, one bar per
    guarantee. None unless some configuration was measured under both."""
    if "guarantee" not in summary or "cpu_us_per_op_total" not in summary:
        return None
    both = compared_guarantees(summary)
    if both.empty:
        return None
    workloads = list(both["workload"].unique())
    figure = Figure(figsize=(10, 2.8 * len(workloads) + 0.6))
    panels = figure.subplots(len(workloads), 2, squeeze=False)
    width = 0.8 / len(GUARANTEE_STYLES)
    for (left, right), workload in zip(panels, workloads, strict=True):
        rows = both[both["workload"] == workload]
        names = _ordered(rows["middleware"])
        for number, (guarantee, hatch) in enumerate(GUARANTEE_STYLES.items()):
            mine = rows[rows["guarantee"] == guarantee].set_index("middleware")
            positions = [i + (number - 0.5) * width for i in range(len(names))]
            colours = [profile(m).colour for m in names]
            for axes, column in ((left, "throughput_ops_s"), (right, "cpu_us_per_op_total")):
                values = [float(mine.loc[m, column]) if m in mine.index else 0.0 for m in names]
                axes.bar(positions, values, width=width, color=colours, hatch=hatch,
                         edgecolor="black", linewidth=0.5)  # fmt: skip
        clients = int(rows["clients"].iloc[0])
        for axes, label in ((left, "ops/s"), (right, "CPU µs per operation")):
            axes.set_xticks(range(len(names)))
            axes.set_xticklabels(names)
            axes.set_ylabel(label)
            axes.set_title(f"{workload}, {clients} clients: {label}", fontsize=10)
            axes.grid(alpha=0.3, axis="y")
    # The bars of one guarantee differ only by colour: the legend shows the hatching.
    keys = [Patch(facecolor="white", edgecolor="black", hatch=h, label=g)
            for g, h in GUARANTEE_STYLES.items()]  # fmt: skip
    panels[0][1].legend(handles=keys, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                        borderaxespad=0.0)  # fmt: skip
    return save(figure, directory, "guarantee-cost")


def compared_guarantees(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows, at each workload's largest client count, of the configurations that
    were measured under every guarantee of :data:`GUARANTEE_STYLES`."""
    if "guarantee" not in summary:
        return summary.iloc[0:0]
    top = at_largest_clients(summary[summary["guarantee"].isin(list(GUARANTEE_STYLES))])
    keys = ["middleware", "workload", "clients"]
    counts = top.groupby(keys)["guarantee"].transform("nunique")
    return top[counts == len(GUARANTEE_STYLES)]
