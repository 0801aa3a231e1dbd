"""The speedup study's part of the report's appendix: the CPU of every kind of process
at every curve point, from which the body's "limited by" was read."""

from __future__ import annotations

import pandas as pd

from results import plots
from results.speedup_report import (
    broker_of,
    everything_else_pct,
    limited_by,
    ordered_variants,
    pct_text,
    short_process,
)


def speedup_appendix(summary: pd.DataFrame, cores: int) -> str:
    """``## What limited each speedup point``: per variant, the CPU of every kind of
    process at every point, from which the body's "limited by" was read."""
    if summary.empty:
        return ""
    parts = [
        "## What limited each speedup point",
        "CPU in % of one core; the machine in % of all its "
        f"{cores} cores; a saturated process is at 90% or more of what it may use; "
        "everything else is the machine's CPU spent outside this run's processes, "
        "e.g. by other people's work on a shared machine.",
    ]
    for key, points in ordered_variants(summary):
        title = plots.variant_label(*key)
        parts.append(f"**{title[0].upper() + title[1:]}**:\n\n" + bottleneck_table(points, cores))
    return "\n\n".join(parts)


def bottleneck_table(points: pd.DataFrame, cores: int) -> str:
    """One variant's points with the CPU of every kind of process, as Markdown."""
    lines = [
        "| middleware | service | N | S(N) | limited by | node CPU % each (cap) | "
        "coordinator CPU % | broker CPU % | busiest client % | machine % | "
        "everything else, % of a core |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in points.iterrows():
        cap = f"{100 * row['node_cpu']:.0f}" if row["node_cpu"] else "none"
        process = short_process(row.get("coordinator_process"))
        busy = pct_text(row.get("coordinator_cpu_max_pct"))
        coordinator = f"{process} {busy}" if process else "-"
        broker = broker_of(row)
        brokers = f"{broker} {pct_text(row.get('broker_cpu_max_pct'))}" if broker else "-"
        cells = [
            row["middleware"], row["service"], row["nodes"], f"{row['speedup_mean']:.2f}",
            limited_by(row, cores), f"{pct_text(row.get('node_cpu_mean_pct'))} ({cap})",
            coordinator, brokers, pct_text(row.get("loadgen_cpu_max_pct")),
            pct_text(row.get("machine_cpu_pct")), pct_text(everything_else_pct(row, cores)),
        ]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)
