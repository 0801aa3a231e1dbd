"""The report's sections on what an operation costs: the ranking of the middlewares by
CPU per operation, and what the stronger delivery guarantee costs each of them. Both
appear only when the stress rows carry the ``guarantee`` and CPU-per-operation columns.
"""

from __future__ import annotations

import math

import pandas as pd

from middlewares.registry import MIDDLEWARES
from results import cost_plots
from results.axes import FigureList
from results.tables import render, table

#: The CPU-per-operation table: (column, header, decimals).
CPU_TABLE = table(
    "rank middleware cpu_us_per_op_total cpu_us_per_op_client cpu_us_per_op_service "
    "cpu_us_per_op_broker cpu_spread_pct throughput_ops_s spread_pct",
    cpu_us_per_op_total="total µs/op",
    spread_pct="ops/s spread %",
)


def cpu_section(summary: pd.DataFrame, figures: FigureList) -> str:
    """``## CPU per operation``: per workload at its largest client count, the
    middlewares ranked by total CPU µs per operation, and the stacked figure."""
    if "cpu_us_per_op_total" not in summary or summary["cpu_us_per_op_total"].isna().all():
        return ""
    top = cost_plots.at_largest_clients(summary)
    # With one repeat there is no spread to show: leave its columns out.
    spec = [c for c in CPU_TABLE if top["repeats"].max() > 1 or "spread" not in c[0]]
    tables = []
    for workload in top["workload"].unique():
        rows = top[top["workload"] == workload].sort_values("cpu_us_per_op_total")
        rows = rows.assign(rank=range(1, len(rows) + 1))
        clients = int(rows["clients"].iloc[0])
        tables.append(f"**{workload}**, {clients} clients:\n\n" + render(rows, spec, True))
    path = cost_plots.cpu_per_operation(summary, figures.directory / "figures")
    image = (
        figures.add(
            path,
            "CPU µs that one completed operation cost, stacked by kind of process. Look at "
            "the total height: it is what the middleware spends per operation, end to end, "
            "whatever share of the machine it got.",
        )
        if path
        else ""
    )
    return "\n\n".join(
        p
        for p in (
            "## CPU per operation",
            "The CPU time of the clients, the service processes and the broker over the "
            "measurement window, divided by the operations completed in it: the "
            "middlewares ranked by what one operation costs in all. " + _steadiness(top),
            image,
            *tables,
        )
        if p
    )


def _steadiness(top: pd.DataFrame) -> str:
    """Why this ranking survives a noisy shared machine, with this run's spreads."""
    claim = (
        "This is the figure that survives a noisy shared machine: when other work takes "
        "the cores, an operation waits longer and ops/s fall, but the CPU the operation "
        "itself burns hardly changes."
    )
    several = top[top["repeats"] > 1]
    if several.empty:
        return claim + " (With one repeat this run cannot show it.)"
    ops = several["spread_pct"].median()
    cpu = several["cpu_spread_pct"].median()
    if math.isnan(cpu):
        return claim
    return claim + (
        f" Here the repeats' throughput differed by {ops:.0f}% (median over the rows "
        f"below) and their CPU per operation by {cpu:.0f}%."
    )


def guarantee_section(everything: pd.DataFrame, figures: FigureList) -> str:
    """``## What the delivery guarantee costs``, when configurations were measured under
    both guarantees; otherwise a line saying how to get it, or nothing when the rows
    do not record their guarantee."""
    if "cpu_us_per_op_total" not in everything or everything["cpu_us_per_op_total"].isna().all():
        return ""
    heading = "## What the delivery guarantee costs"
    path = cost_plots.guarantee_cost(everything, figures.directory / "figures")
    if path is None:
        measured = ", ".join(sorted(map(str, everything["guarantee"].unique())))
        return (
            f"{heading}\n\nThis run measured {measured} only. Run the study with "
            "`--guarantee both` to see what the stronger guarantee costs."
        )
    both = cost_plots.compared_guarantees(everything)
    lines = []
    for (workload, middleware), rows in _in_report_order(both):
        strong = rows[rows["guarantee"] == "at-least-once"].iloc[0]
        weak = rows[rows["guarantee"] == "at-most-once"].iloc[0]
        lines.append(
            f"| {workload} | {middleware} | {strong.throughput_ops_s:,.0f} | "
            f"{weak.throughput_ops_s:,.0f} | "
            f"{_ratio(weak.throughput_ops_s, strong.throughput_ops_s)} | "
            f"{strong.cpu_us_per_op_total:,.0f} | {weak.cpu_us_per_op_total:,.0f} | "
            f"{_ratio(strong.cpu_us_per_op_total, weak.cpu_us_per_op_total)} |"
        )
    image = figures.add(
        path,
        "At-least-once (plain bars: confirms, manual acks, reliable queues, leases) "
        "against at-most-once (hatched: none of them), per middleware: ops/s on the left, "
        "CPU µs per operation on the right. Look at the pairs that differ: that is the "
        "price of not losing messages; a pair of equal bars is a middleware that pays "
        "nothing extra for it.",
    )
    return (
        f"{heading}\n\n{image}\n\n"
        "| workload | middleware | ops/s at-least-once | ops/s at-most-once | "
        "at-most-once speed-up | CPU µs/op at-least-once | CPU µs/op at-most-once | "
        "CPU cost of the guarantee |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(lines)
    )


def _in_report_order(frame: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    """Groups of ``frame`` by workload (in the study's order) and middleware (in the
    registry's order)."""
    order = {name: index for index, name in enumerate(MIDDLEWARES)}
    groups = []
    for workload in frame["workload"].unique():
        mine = frame[frame["workload"] == workload]
        for middleware in sorted(mine["middleware"].unique(), key=lambda m: order.get(m, 99)):
            groups.append(((workload, middleware), mine[mine["middleware"] == middleware]))
    return groups


def _ratio(numerator: float, denominator: float) -> str:
    return f"x{numerator / denominator:.2f}" if denominator else "-"
