"""The report's figures, drawn only from the summaries of a study's files.

Figures are built with matplotlib's object API (no pyplot), so drawing needs no display
and leaves no global state. Every figure is saved as PNG (for quick viewing) and SVG (for
print), under ``<dir>/figures/``. Colours are fixed per middleware so all figures read alike.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from middlewares.registry import MIDDLEWARES
from results.axes import clients_axis, legend_outside, milliseconds_axis, save
from results.profiles import profile

PERCENTILE_STYLES = [
    ("p50_ms", "p50", "-"),
    ("p90_ms", "p90", "--"),
    ("p99_ms", "p99", "-."),
    ("p999_ms", "p99.9", ":"),
]


def _save(figure: Figure, directory: Path, name: str) -> Path:
    return save(figure, directory, name)


def _ordered(names: Any) -> list[str]:
    present = set(names)
    return [m for m in MIDDLEWARES if m in present] + sorted(present - set(MIDDLEWARES))


def _slug(label: str) -> str:
    return label.replace("(", "-").replace(")", "").replace(" ", "")


def throughput_vs_clients(summary: pd.DataFrame, directory: Path) -> list[Path]:
    """Per workload: throughput against clients, one line per middleware, with the
    middleware's echo baseline dashed in the same colour; error bars (one standard
    deviation) only when there was more than one repeat."""
    paths = []
    echo = summary[summary["service"] == "echo"]
    for workload in summary["workload"].unique():
        if workload == "echo" and summary["workload"].nunique() > 1:
            continue
        data = summary[summary["workload"] == workload]
        figure = Figure(figsize=(7.5, 4.2))
        axes = figure.subplots()
        middlewares = _ordered(data["middleware"])
        for number, middleware in enumerate(middlewares):
            line = data[data["middleware"] == middleware].sort_values("clients")
            style = {"marker": "o", "color": profile(middleware).colour, "label": middleware}
            if line["repeats"].max() > 1:
                # A small sideways shift per middleware keeps the error bars apart.
                shift = 2 ** (0.04 * (number - (len(middlewares) - 1) / 2))
                axes.errorbar(
                    line["clients"] * shift, line["throughput_ops_s"],
                    yerr=line["throughput_std"], capsize=3, **style,
                )  # fmt: skip
            else:
                axes.plot(line["clients"], line["throughput_ops_s"], **style)
            base = echo[echo["middleware"] == middleware].sort_values("clients")
            if workload != "echo" and not base.empty:
                axes.plot(
                    base["clients"],
                    base["throughput_ops_s"],
                    linestyle="--",
                    linewidth=1,
                    color=profile(middleware).colour,
                    label=f"{middleware} echo baseline",
                )
        axes.set_xlabel("client processes (closed loop, log₂ scale)")
        axes.set_ylabel("confirmed operations per second")
        axes.set_title(f"{workload}: throughput against clients")
        clients_axis(axes, data["clients"])
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
        legend_outside(axes)
        paths.append(_save(figure, directory, f"throughput-{_slug(workload)}"))
    return paths


def latency_percentiles(summary: pd.DataFrame, directory: Path) -> list[Path]:
    """Per workload: p50/p90/p99/p99.9 against clients, one panel per middleware."""
    paths = []
    for workload in summary["workload"].unique():
        data = summary[summary["workload"] == workload]
        middlewares = _ordered(data["middleware"])
        figure = Figure(figsize=(max(6.5, 3.2 * len(middlewares)), 3.8))
        panels = figure.subplots(1, len(middlewares), sharey=True, squeeze=False)
        for axes, middleware in zip(panels[0], middlewares, strict=True):
            line = data[data["middleware"] == middleware].sort_values("clients")
            for column, label, style in PERCENTILE_STYLES:
                axes.plot(
                    line["clients"],
                    line[column],
                    linestyle=style,
                    marker="o",
                    markersize=3,
                    color=profile(middleware).colour,
                    label=label,
                )
            axes.set_title(middleware)
            axes.set_xlabel("client processes")
            clients_axis(axes, data["clients"])
            axes.grid(alpha=0.3, which="both")
        milliseconds_axis(panels[0][0])
        panels[0][0].set_ylabel("latency (ms, log scale)")
        # One legend for all panels, in black: the line style, not the colour, is the key.
        keys = [Line2D([], [], color="black", linestyle=style, label=label)
                for _, label, style in PERCENTILE_STYLES]  # fmt: skip
        panels[0][-1].legend(handles=keys, fontsize=8, loc="upper left",
                             bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)  # fmt: skip
        figure.suptitle(f"{workload}: latency percentiles (merged HDR histograms)")
        paths.append(_save(figure, directory, f"latency-{_slug(workload)}"))
    return paths


def cpu_breakdown(summary: pd.DataFrame, directory: Path) -> list[Path]:
    """Per workload, at its largest client count: where the CPU went (service, broker,
    load generator), in cores, next to the machine's capacity."""
    paths = []
    for workload in summary["workload"].unique():
        data = summary[summary["workload"] == workload]
        top = data[data["clients"] == data["clients"].max()]
        middlewares = _ordered(top["middleware"])
        figure = Figure(figsize=(6.5, 4))
        axes = figure.subplots()
        bottoms = [0.0] * len(middlewares)
        parts = [
            ("service_cpu_pct", "service processes", "#4c72b0"),
            ("broker_cpu_pct", "broker (shared)", "#dd8452"),
            ("loadgen_cpu_pct", "load generator", "#8c8c8c"),
        ]
        for column, label, colour in parts:
            values = []
            for middleware in middlewares:
                row = top[top["middleware"] == middleware].iloc[0]
                value = row.get(column, math.nan)
                values.append(0.0 if pd.isna(value) else value / 100)
            axes.bar(middlewares, values, bottom=bottoms, label=label, color=colour)
            bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
        cores = summary.attrs.get("cpu_count")
        if cores:
            # Whatever else kept the machine busy: other people's processes, the kernel.
            busy = [
                top[top["middleware"] == m].iloc[0]["machine_cpu_pct"] * cores / 100
                for m in middlewares
            ]
            other = [max(0.0, b - used) for b, used in zip(busy, bottoms, strict=True)]
            axes.bar(middlewares, other, bottom=bottoms, label="everything else", color="#d0d0d0")
            axes.axhline(cores, color="black", linestyle="--", linewidth=1, label="machine cores")
        axes.set_ylabel("CPU (cores)")
        axes.set_title(f"{workload}: CPU at {int(top['clients'].max())} clients")
        legend_outside(axes)
        axes.grid(alpha=0.3, axis="y")
        paths.append(_save(figure, directory, f"cpu-{_slug(workload)}"))
    return paths


#: What tells one speedup study variant from another: its figures are drawn apart.
VARIANT_KEYS = ["node_cpu", "work_ms", "fixed_work"]


def variant_label(node_cpu: float, work_ms: float, fixed_work: bool) -> str:
    """In words: how the nodes were capped, their simulated work, and the mode."""
    cap = f"nodes capped at {node_cpu:g} core" if node_cpu else "uncapped nodes"
    work = (
        f", {work_ms:g} ms sleep per request (secondary variant)"
        if work_ms
        else ", no simulated work"
    )
    return cap + work + (", fixed work" if fixed_work else "")


def variant_slug(node_cpu: float, work_ms: float, fixed_work: bool) -> str:
    """The file-name part of a variant: ``0ms``, ``0ms-cpu0.25``, ``0ms-cpu0.25-fixed``."""
    cap = f"-cpu{node_cpu:g}" if node_cpu else ""
    return f"{work_ms:g}ms{cap}" + ("-fixed" if fixed_work else "")


def _variants(frame: pd.DataFrame) -> Any:
    """Groups of ``frame`` by service and variant."""
    return frame.groupby(["service", *VARIANT_KEYS])


def speedup_vs_nodes(speedup: pd.DataFrame, directory: Path) -> list[Path]:
    """Per service and variant: S(N) per middleware, with the ideal S(N) = N, and the
    range of the repeats as error bars when there was more than one repeat."""
    paths = []
    for (service, node_cpu, work_ms, fixed_work), data in _variants(speedup):
        figure = Figure(figsize=(6, 4.5))
        axes = figure.subplots()
        nodes = sorted(data["nodes"].unique())
        axes.plot(nodes, nodes, color="black", linestyle="--", linewidth=1, label="ideal S(N) = N")
        middlewares = _ordered(data["middleware"])
        for number, middleware in enumerate(middlewares):
            line = data[data["middleware"] == middleware].sort_values("nodes")
            spread = [
                line["speedup_mean"] - line["speedup_min"],
                line["speedup_max"] - line["speedup_mean"],
            ]
            # A small sideways offset per middleware keeps overlapping error bars apart.
            offset = 0.03 * (number - (len(middlewares) - 1) / 2)
            axes.errorbar(
                line["nodes"] + offset,
                line["speedup_mean"],
                yerr=spread if line["repeats"].max() > 1 else None,
                marker="o",
                capsize=3,
                color=profile(middleware).colour,
                label=middleware,
            )
        axes.set_xlabel("nodes")
        measure = "T(1) / T(N), fixed work" if fixed_work else "X(N) / X(1)"
        axes.set_ylabel(f"speedup S(N) = {measure}")
        axes.set_xticks(nodes)
        axes.set_ylim(bottom=0)
        axes.set_title(f"{service}: {variant_label(node_cpu, work_ms, fixed_work)}", fontsize=10)
        axes.grid(alpha=0.3)
        legend_outside(axes)
        slug = variant_slug(node_cpu, work_ms, fixed_work)
        paths.append(_save(figure, directory, f"speedup-{service}-{slug}"))
    return paths


def per_node_load(loads: pd.DataFrame, directory: Path) -> list[Path]:
    """Per service and variant: each node's share of the work at the largest N, per
    middleware; an even spread puts every bar at 1/N."""
    paths = []
    for (service, node_cpu, work_ms, fixed_work), data in _variants(loads):
        middlewares = _ordered(data["middleware"])
        figure = Figure(figsize=(6.5, 4))
        axes = figure.subplots()
        width = 0.8 / max(1, data["node"].nunique())
        for offset, node in enumerate(sorted(data["node"].unique())):
            shares = []
            for middleware in middlewares:
                match = data[(data["middleware"] == middleware) & (data["node"] == node)]
                shares.append(match["share"].mean() if not match.empty else 0.0)
            positions = [i + offset * width for i in range(len(middlewares))]
            axes.bar(positions, shares, width=width, label=f"node {node}")
        nodes = data["node"].nunique()
        axes.axhline(1 / nodes, color="black", linestyle="--", linewidth=1, label="even share")
        axes.set_xticks([i + width * (nodes - 1) / 2 for i in range(len(middlewares))])
        axes.set_xticklabels(middlewares)
        axes.set_ylabel(f"share of the {data['measure'].iloc[0]}")
        axes.set_title(
            f"{service}, {variant_label(node_cpu, work_ms, fixed_work)}:\n"
            f"load per node at N = {nodes}",
            fontsize=10,
        )
        axes.set_ylim(0, 1.1 * max(data["share"].max(), 1 / nodes))
        legend_outside(axes)
        axes.grid(alpha=0.3, axis="y")
        slug = variant_slug(node_cpu, work_ms, fixed_work)
        paths.append(_save(figure, directory, f"nodes-{service}-{slug}"))
    return paths
