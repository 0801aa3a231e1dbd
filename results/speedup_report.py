"""The speedup part of ``REPORT.md``, drawn from ``speedup.csv/json`` alone.

One subsection per variant of the study: the headline first (every node held to a
fraction of one core, no simulated work), then fixed work, then the rest (sleep-based
simulated work is secondary). Each has S(N) per service with the ideal line, the table,
what limited every point, and each node's share of the load. Then, per middleware, what
limits it, with the CPU that one operation costs in every kind of process.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from middlewares.registry import MIDDLEWARES
from results import plots
from results.axes import FigureList
from results.bottleneck import SATURATED
from results.tables import SPEEDUP_TABLE, render

#: The targets of the speedup study: S(N) at least this much, by N.
SPEEDUP_TARGETS = {2: 1.8, 3: 2.5}
#: A speedup this far above N is called superlinear.
SUPERLINEAR = 1.05
#: The table in the report's body: what a variant's heading already says (cap, work,
#: fixed work) and the processes' CPU, which the appendix's bottleneck table shows, are
#: left out.
MAIN_TABLE = [
    c
    for c in SPEEDUP_TABLE
    if c[0] not in ("bottleneck_cpu_pct", "node_cpu", "work_ms", "tasks", "node_cpu_mean_pct",
                    "trusted")
]  # fmt: skip


def speedup_section(
    document: dict[str, Any], summary: pd.DataFrame, loads: pd.DataFrame, figures: FigureList
) -> str:
    """The ``## Speedup`` section, drawing its figures under ``<report dir>/figures``."""
    cores = int(document["environment"].get("cpu_count") or 1)
    parts = ["## Speedup with 1, 2 and 3 nodes", _intro(document)]
    variants = ordered_variants(summary)
    for number, (key, points) in enumerate(variants):
        part_loads = _matching(loads, key) if not loads.empty else loads
        parts.append(_variant(key, points, part_loads, figures, cores, headline=number == 0))
    if variants:
        parts.append(_limits(variants[0][1], cores))
    return "\n\n".join(p for p in parts if p)


def _intro(document: dict[str, Any]) -> str:
    config = document["config"]
    capacity = config.get("node_capacity", "node capacity: uncapped")
    repeats = (
        f"{config['repeat']} repeats; the error bars span them"
        if config["repeat"] > 1
        else "one repeat, so no error bars"
    )
    coordinators = (
        f"held to {config['coordinator_cpu']:g} of a core"
        if config.get("coordinator_cpu")
        else "uncapped"
    )
    return (
        "Every node is a machine of fixed capacity: each node process is held to a "
        "fraction of one core, so N nodes have N times the capacity of one on any host, "
        "and whatever else limits a deployment (a front, a master, a broker, the clients "
        f"or the machine itself) shows up. Here, {capacity}. Coordinators are "
        f"{coordinators}; clients and brokers are never capped. On separate real "
        "machines no cap is needed: each node has its own cores.\n\n"
        f"Every N gets the same offered load: {config['offered_load']}. S(N) = X(N) / "
        "X(1), each N paired with the 1-node run of the same repeat "
        f"({repeats}). With fixed work, "
        "each run does M operations as fast as the deployment allows, and S(N) = "
        "T(1) / T(N) (first submit to last confirmed result). Simulated work "
        f"(`--work-ms`, {config['work_kind']}) is a secondary variant: a node that sleeps "
        "spends no CPU, so it scales on any machine whatever the architecture."
    )


#: A variant of the study: (node cap, simulated work in ms, fixed work or not).
Variant = tuple[float, float, bool]


def ordered_variants(summary: pd.DataFrame) -> list[tuple[Variant, pd.DataFrame]]:
    """The study's variants, the headline first: capped with no work (timed, then fixed
    work), then uncapped with no work, then simulated work."""
    groups = [
        ((float(k[0]), float(k[1]), bool(k[2])), g) for k, g in summary.groupby(plots.VARIANT_KEYS)
    ]

    def rank(item: tuple[Variant, pd.DataFrame]) -> tuple[bool, bool, bool, float]:
        node_cpu, work_ms, fixed_work = item[0]
        return (work_ms > 0, not node_cpu, fixed_work, work_ms)

    return sorted(groups, key=rank)


def _matching(frame: pd.DataFrame, key: Variant) -> pd.DataFrame:
    node_cpu, work_ms, fixed_work = key
    return frame[
        (frame["node_cpu"] == node_cpu)
        & (frame["work_ms"] == work_ms)
        & (frame["fixed_work"] == fixed_work)
    ]


def _variant(
    key: Variant,
    points: pd.DataFrame,
    loads: pd.DataFrame,
    figures: FigureList,
    cores: int,
    headline: bool,
) -> str:
    node_cpu, work_ms, _ = key
    title = plots.variant_label(*key)
    title = title[0].upper() + title[1:]
    if headline and node_cpu and not work_ms:
        title += " (the headline)"
    drawn = figures.directory / "figures"
    bars = (
        " Error bars: the range of the repeats."
        if points["repeats"].max() > 1
        else " One repeat: no error bars."
    )
    parts = [
        f"### {title}",
        *(
            figures.add(
                path,
                f"{path.stem.split('-')[1]}: speedup S(N) per middleware against the ideal "
                "S(N) = N (dashed). Look at where each line leaves the ideal: from there a "
                "shared process or the machine, named in the table below, limits it." + bars,
            )
            for path in plots.speedup_vs_nodes(points, drawn)
        ),
        render(points, MAIN_TABLE, markdown=True),
        _above_ideal(points),
        _below_target(points, cores),
    ]
    if not loads.empty:
        parts.append(
            "\n\n".join(
                figures.add(
                    path,
                    "Share of the work done by each node at the largest N (of the requests "
                    "served, from the per-node counters, warm-up included). Bars at the "
                    "dashed line mean an even spread; a short bar is a node that idled.",
                )
                for path in plots.per_node_load(loads, drawn)
            )
        )
    return "\n\n".join(p for p in parts if p)


def _above_ideal(points: pd.DataFrame) -> str:
    """Why a point lies above S(N) = N, for every point that does."""
    above = points[points["speedup_mean"] > SUPERLINEAR * points["nodes"]]
    if above.empty:
        return ""
    cases = []
    for _, row in above.iterrows():
        base = points[
            (points["middleware"] == row["middleware"])
            & (points["service"] == row["service"])
            & (points["nodes"] == 1)
        ]
        before = per_operation_us(base.iloc[0]).get("the nodes", 0.0) if not base.empty else 0.0
        after = per_operation_us(row).get("the nodes", 0.0)
        cost = (
            f", a node spending {after:,.0f} µs of CPU per operation against {before:,.0f} at N = 1"
            if before and after
            else ""
        )
        spread = (
            f", S ranging {row['speedup_min']:.2f}-{row['speedup_max']:.2f} over the repeats"
            if row["repeats"] > 1
            else ""
        )
        cases.append(
            f"{row['middleware']} {row['service']} S({int(row['nodes'])}) = "
            f"{row['speedup_mean']:.2f}{cost}{spread}"
        )
    return (
        "Above the ideal line: " + "; ".join(cases) + ". More nodes cannot add more than "
        "their capacity, so S(N) > N means the single node was less efficient than each of "
        "several: one node serves every client connection and every queued task, and pays "
        "more CPU per operation for it (polling, context switches, larger batches to "
        "sort through), or the 1-node run of that repeat got a smaller share of the shared "
        "machine. It is not a gain of the architecture."
    )


def short_process(process: Any) -> str:
    """``middlewares.xmlrpc.filter_service`` -> ``xmlrpc.filter_service``."""
    text = str(process) if isinstance(process, str) else ""
    return text.removeprefix("middlewares.")


def pct_text(value: Any) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.0f}"


def broker_of(row: Any) -> str:
    """The busiest broker process on the requests' path, or "" when none was crossed."""
    process = row.get("broker_process")
    return process if isinstance(process, str) else ""


def limited_by(row: Any, cores: int) -> str:
    """What limited a summary point, in words, with its CPU."""
    kind = row.get("bottleneck") or ""
    if not kind:
        return "not recorded"
    if kind == "none":
        return "nothing saturated: latency-bound (clients wait for round trips)"
    cpu, limit = row.get("bottleneck_cpu_pct"), row.get("bottleneck_limit_pct")
    if kind == "machine":
        return f"the machine: {pct_text(cpu)}% of its {cores} cores busy"
    if kind == "capacity":
        return f"capacity: nodes at {pct_text(cpu)}% of a core, cap {pct_text(limit)}%"
    if kind == "clients":
        return f"the clients: one at {pct_text(cpu)}% of a core"
    process = short_process(row.get("bottleneck_process"))
    return f"architecture: {process} at {pct_text(cpu)}% of {pct_text(limit)}%"


def everything_else_pct(row: Any, cores: int) -> float:
    """CPU, in % of one core, that the machine spent on none of the run's processes
    (the deployment, the clients, the brokers): other people's work, the kernel."""
    ours = [row.get("service_cpu_pct"), row.get("loadgen_cpu_pct"), row.get("broker_cpu_pct")]
    busy = row.get("machine_cpu_pct")
    if busy is None or pd.isna(busy):
        return math.nan
    return max(0.0, busy * cores - sum(v for v in ours if v is not None and not pd.isna(v)))


def _below_target(points: pd.DataFrame, cores: int) -> str:
    lines = []
    for _, row in points.iterrows():
        target = SPEEDUP_TARGETS.get(int(row["nodes"]))
        if target is None or row["speedup_mean"] >= target:
            continue
        base = points[
            (points["middleware"] == row["middleware"])
            & (points["service"] == row["service"])
            & (points["nodes"] == 1)
        ]
        cause = (f"; limited by {limited_by(row, cores)}" if row.get("bottleneck") else "") + (
            _node_cost_change(base.iloc[0], row) if not base.empty else ""
        )
        lines.append(
            f"- {row['middleware']} {row['service']}: S({row['nodes']}) = "
            f"{row['speedup_mean']:.2f}, below {target}{cause}."
        )
    if not lines:
        targets = ", ".join(f"S({n}) >= {t}" for n, t in SPEEDUP_TARGETS.items())
        return f"Every point meets {targets}."
    return (
        "Below the targets ("
        + ", ".join(f"S({n}) >= {t}" for n, t in SPEEDUP_TARGETS.items())
        + "):\n\n"
        + "\n".join(lines)
    )


def _node_cost_change(first: Any, row: Any) -> str:
    """How a node's CPU per operation changed from N = 1 to ``row``'s N, when it grew."""
    before = per_operation_us(first).get("the nodes", 0.0)
    after = per_operation_us(row).get("the nodes", 0.0)
    if not before or after < 1.1 * before:
        return ""
    return (
        f"; a node spent {after:,.0f} µs of CPU per operation against {before:,.0f} µs at "
        "N = 1, so the same caps did less work"
    )


def per_operation_us(row: Any) -> dict[str, float]:
    """CPU µs that one operation cost at a summary point, by kind of process."""
    rate = row["throughput_ops_s"]
    if not rate:
        return {}

    def per_op(pct: Any) -> float:
        return 0.0 if pct is None or pd.isna(pct) else 1e4 * pct / rate

    costs = {"the nodes": per_op(row.get("node_cpu_mean_pct", math.nan) * row["nodes"])}
    coordinator = short_process(row.get("coordinator_process"))
    if coordinator:
        costs[coordinator] = per_op(row.get("coordinator_cpu_max_pct"))
    if broker_of(row):
        costs[f"the broker ({broker_of(row)})"] = per_op(row.get("broker_cpu_max_pct"))
    costs["the clients"] = per_op(row.get("loadgen_cpu_pct"))
    return costs


def _limits(points: pd.DataFrame, cores: int) -> str:
    parts = [
        "### What limits each middleware",
        "From the first variant above, per service: S at each N, what limited the "
        "largest N, and where one operation's CPU went at N = 1 (µs of CPU per "
        "operation, all processes of a kind together). The cores that S(N) = N would "
        "need at those costs are set against the machine's: beyond about 90% of them, "
        "the host, not the architecture, caps the speedup on this machine.",
    ]
    for middleware in [m for m in MIDDLEWARES if m in set(points["middleware"])]:
        lines = []
        mine = points[points["middleware"] == middleware]
        for service, line in mine.groupby("service"):
            lines.append(f"- **{service}**: " + _service_limits(line.sort_values("nodes"), cores))
        parts.append(f"#### {middleware}\n\n" + "\n".join(lines))
    return "\n\n".join(parts)


def _service_limits(line: pd.DataFrame, cores: int) -> str:
    first, widest = line.iloc[0], line.iloc[-1]
    n = int(widest["nodes"])
    speedups = ", ".join(
        f"S({int(r.nodes)}) = {r.speedup_mean:.2f}" for r in line.itertuples() if r.nodes > 1
    )
    text = f"{speedups}; at N = {n}, {limited_by(widest, cores)}."
    costs = per_operation_us(first)
    if not costs or int(first["nodes"]) != 1:
        return text
    rate = first["throughput_ops_s"]
    listed = ", ".join(f"{kind} {us:,.0f} µs" for kind, us in costs.items())
    needed = n * rate * sum(costs.values()) / 1e6
    text += (
        f" At N = 1 ({rate:,.0f}/s) one operation cost {listed} of CPU. S({n}) = {n} "
        f"would need {needed:.2f} cores in all (the machine has {cores})"
    )
    # A single process every operation crosses (a front, a broker) bounds S by itself.
    shared = {k: us for k, us in costs.items() if k not in ("the nodes", "the clients")}
    alone = {k: n * rate * us / 1e4 for k, us in shared.items()}
    over = {k: pct for k, pct in alone.items() if pct >= 100 * SATURATED}
    if over:
        text += (
            ", and "
            + " and ".join(f"{kind} alone {pct:.0f}% of a core" for kind, pct in over.items())
            + (
                ": a single process that every operation crosses, at or beyond what one "
                "core gives, bounds the speedup whatever the machine."
            )
        )
    else:
        text += "."
    quiet = [k for k, pct in alone.items() if pct < 5 and not k.startswith("the ")]
    if quiet:
        text += f" {', '.join(quiet)}: not on the request path (under 5% of a core)."
    widest_costs = per_operation_us(widest)
    if widest["speedup_mean"] > SUPERLINEAR * n and widest_costs:
        text += (
            f" S({n}) exceeds {n}: a node spent {costs['the nodes']:,.0f} µs per operation "
            f"at N = 1 but {widest_costs['the nodes']:,.0f} µs at N = {n}; one node "
            "serving every client connection works less efficiently than several "
            "sharing them."
        )
    return text
