"""The report's opening: at most ten lines with the answer (the ranking per service, the
speedups, the verdict on each target), before any figure."""

from __future__ import annotations

import math

import pandas as pd

from middlewares.registry import MIDDLEWARES
from results.data import ResultsData
from results.speedup_report import SPEEDUP_TARGETS, ordered_variants
from results.stress_report import BASELINE_TARGET_PCT

#: The opening never grows past this many lines.
MAX_LINES = 10


def summary_lines(data: ResultsData) -> list[str]:
    """The summary as Markdown bullets, at most :data:`MAX_LINES` of them."""
    lines: list[str] = []
    stress = data.stress_summary
    if not stress.empty:
        lines += _rankings(stress)
        lines.append(_baseline_verdict(stress))
        cheapest = _cheapest(stress)
        if cheapest:
            lines.append(cheapest)
    if not data.speedup_summary.empty:
        lines += _speedups(data.speedup_summary)
    lines.append(_repeats(stress, data.speedup_summary))
    return [line for line in lines if line][:MAX_LINES]


def _order(names: pd.Series) -> list[str]:
    present = set(names)
    return [m for m in MIDDLEWARES if m in present] + sorted(present - set(MIDDLEWARES))


def _rankings(summary: pd.DataFrame) -> list[str]:
    lines = []
    for workload in summary["workload"].unique():
        if workload == "echo":
            continue
        rows = summary[summary["workload"] == workload]
        top = rows[rows["clients"] == rows["clients"].max()]
        ranked = top.sort_values("throughput_ops_s", ascending=False)
        order = " > ".join(f"{r.middleware} {r.throughput_ops_s:,.0f}" for r in ranked.itertuples())
        lines.append(f"- **{workload}** at {int(top['clients'].iloc[0])} clients (ops/s): {order}")
    return lines[:3]


def _baseline_verdict(summary: pd.DataFrame) -> str:
    services = summary[summary.get("vs_echo_pct", pd.Series(dtype=float)).notna()]
    if services.empty:
        return (
            f"- **Target: services at ≥ {BASELINE_TARGET_PCT:.0f}% of their echo**: not "
            "checked, no echo baseline was measured (`--baseline`)"
        )
    misses = []
    total = 0
    for (workload, middleware), rows in services.groupby(["workload", "middleware"]):
        total += 1
        first = rows.sort_values("clients").iloc[0]["vs_echo_pct"]
        if first < BASELINE_TARGET_PCT:
            misses.append(f"{middleware} {workload} ({first:.0f}%)")
    verdict = (
        "met by every service"
        if not misses
        else f"met by {total - len(misses)} of {total}; missed by " + ", ".join(misses)
    )
    return (
        f"- **Target: services at ≥ {BASELINE_TARGET_PCT:.0f}% of their echo** "
        f"(fewest clients): {verdict}"
    )


def _cheapest(summary: pd.DataFrame) -> str:
    if "cpu_us_per_op_total" not in summary:
        return ""
    rows = summary[(summary["service"] != "echo") & summary["cpu_us_per_op_total"].notna()]
    if rows.empty:
        return ""
    per_middleware = rows.groupby("middleware")["cpu_us_per_op_total"].median().sort_values()
    listed = " < ".join(f"{m} {us:,.0f}" for m, us in per_middleware.items())
    return f"- **CPU per operation** (median over the services, µs, all processes): {listed}"


def _speedups(summary: pd.DataFrame) -> list[str]:
    variants = ordered_variants(summary)
    if not variants:
        return []
    (node_cpu, _, _), points = variants[0]
    lines = []
    cap = f"nodes capped at {node_cpu:g} core" if node_cpu else "uncapped nodes"
    met, total = 0, 0
    for service, line in points.groupby("service"):
        widest = int(line["nodes"].max())
        values = []
        for middleware in _order(line["middleware"]):
            mine = line[line["middleware"] == middleware].set_index("nodes")["speedup_mean"]
            values.append(f"{middleware} {mine.get(widest, math.nan):.2f}")
            for nodes, target in SPEEDUP_TARGETS.items():
                if nodes in mine.index:
                    total += 1
                    met += bool(mine[nodes] >= target)
        lines.append(f"- **Speedup {service}**, S({widest}), {cap}: " + ", ".join(values))
    targets = ", ".join(f"S({n}) ≥ {t}" for n, t in SPEEDUP_TARGETS.items())
    lines.append(f"- **Target: {targets}**: met at {met} of {total} points")
    return lines[:3]


def _repeats(stress: pd.DataFrame, speedup: pd.DataFrame) -> str:
    frames = [f for f in (stress, speedup) if not f.empty]
    if not frames:
        return ""
    repeats = max(int(f["repeats"].max()) for f in frames)
    flagged = sum(int((~f["trusted"]).sum()) for f in frames)
    care = f"; {flagged} point(s) flagged, see *Runs to treat with care*" if flagged else ""
    if repeats == 1:
        return (
            "- **One repeat**: no spread is known, so differences under about 10% may be "
            f"noise (`--profile standard` gives three){care}"
        )
    spread = max(float(f["spread_pct"].max()) for f in frames)
    return f"- **{repeats} repeats**: largest spread of throughput {spread:.0f}%{care}"
