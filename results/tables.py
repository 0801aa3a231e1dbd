"""Summaries of a study's runs, as data frames and as text or Markdown tables.

Repeats of one configuration are combined here: throughput is the mean of the repeats
with their spread, and latency percentiles come from the repeats' histograms *merged*
(read from the JSON), never from averaging percentiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from middlewares.registry import MIDDLEWARES
from results.files import CELL_KEYS
from results.histogram import merge, summary_ms

#: A configuration: everything but the repeat number.
CONFIG_KEYS = [
    "middleware", "service", "mode", "window", "rate", "clients", "nodes", "work_ms",
    "guarantee", "payload_words",
]  # fmt: skip
#: What a row of an older file lacks, and what it meant then.
CONFIG_DEFAULTS = {"guarantee": "at-least-once", "payload_words": 0}
#: CPU µs per completed operation, by kind of process and in total, when rows have them.
CPU_PER_OP = (
    "cpu_us_per_op_client",
    "cpu_us_per_op_service",
    "cpu_us_per_op_broker",
    "cpu_us_per_op_total",
)
#: Columns that say how much repeats differ: "n/a" when there was only one.
REPEAT_ONLY = {"spread_pct", "cpu_spread_pct", "speedup_min", "speedup_max", "speedup_spread_pct"}


def workload_label(service: str, mode: str, window: int) -> str:
    """``insult``, ``filter``, ``filter-pipelined(16)`` or ``echo``."""
    return service if mode == "sync" else f"{service}-{mode}({window})"


def summarise(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per configuration, from the ``runs`` list of a study's JSON."""
    if not runs:
        return pd.DataFrame()
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for run in runs:
        row = {**CONFIG_DEFAULTS, **run["row"]}
        groups.setdefault(tuple(row[k] for k in CONFIG_KEYS), []).append(run)
    summary = []
    for key, members in groups.items():
        rows = [m["row"] for m in members]
        rates = [r["throughput_ops_s"] for r in rows]
        mean = sum(rates) / len(rates)
        latency = summary_ms(merge(m["detail"]["histogram"] for m in members))
        flags = sorted({f for r in rows for f in (r.get("flags") or "").split(";") if f})
        summary.append(
            {
                **dict(zip(CONFIG_KEYS, key, strict=True)),
                "workload": workload_label(rows[0]["service"], rows[0]["mode"], rows[0]["window"]),
                "repeats": len(rows),
                "throughput_ops_s": mean,
                "throughput_std": pd.Series(rates).std(ddof=1) if len(rates) > 1 else 0.0,
                "spread_pct": 100 * (max(rates) - min(rates)) / mean if mean else 0.0,
                **latency,
                "errors": sum(r["errors"] + r["timeouts"] for r in rows),
                "unconfirmed": sum(r["unconfirmed"] for r in rows),
                "service_cpu_pct": _mean(r["service_cpu_pct"] for r in rows),
                "service_cpu_max_pct": max(r["service_cpu_max_pct"] for r in rows),
                "broker_cpu_pct": _mean(r.get("broker_cpu_pct", math.nan) for r in rows),
                "loadgen_cpu_pct": _mean(r["loadgen_cpu_pct"] for r in rows),
                "loadgen_cpu_max_pct": max(r["loadgen_cpu_max_pct"] for r in rows),
                "machine_cpu_pct": _mean(r["machine_cpu_pct"] for r in rows),
                **_cpu_per_op(rows),
                "trusted": all(r["trusted"] for r in rows),
                "flags": ";".join(flags),
            }
        )
    return pd.DataFrame(summary)


def _cpu_per_op(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean CPU µs per operation of each kind over the repeats, and how much the total
    differs between them (the same measure as the throughput's spread)."""
    if not all(c in rows[0] for c in CPU_PER_OP):
        return {}
    means = {c: _mean(r[c] for r in rows) for c in CPU_PER_OP}
    totals = [r["cpu_us_per_op_total"] for r in rows if r["cpu_us_per_op_total"] is not None]
    mean = means["cpu_us_per_op_total"]
    spread = 100 * (max(totals) - min(totals)) / mean if totals and mean else math.nan
    return {**means, "cpu_spread_pct": spread}


def _mean(values: Any) -> float:
    numbers = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(numbers) / len(numbers) if numbers else math.nan


def with_baseline(summary: pd.DataFrame) -> pd.DataFrame:
    """Add ``vs_echo_pct``: each request/response workload's throughput as a share of the
    echo baseline of the same middleware, client count, work and guarantee, when the
    study ran one."""
    if summary.empty:
        return summary
    keys = ["middleware", "clients", "work_ms", "guarantee"]
    echo = summary[summary["service"] == "echo"].set_index(keys)
    shares = []
    for row in summary.itertuples():
        key = tuple(getattr(row, k) for k in keys)
        # A pipelined workload is not a round trip, so the echo is no yardstick for it.
        if row.service == "echo" or row.mode != "sync" or key not in echo.index:
            shares.append(math.nan)
        else:
            base = echo.loc[key, "throughput_ops_s"]
            shares.append(100 * row.throughput_ops_s / base if base else math.nan)
    return summary.assign(vs_echo_pct=shares)


def _cell(value: Any, digits: int, single: bool = False) -> str:
    if single:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}"
    return str(value)


#: How each column of a printed table is shown: its header and its decimals.
COLUMNS: dict[str, tuple[str, int]] = {
    "middleware": ("middleware", 0),
    "service": ("service", 0),
    "workload": ("workload", 0),
    "clients": ("clients", 0),
    "nodes": ("nodes", 0),
    "node_cpu": ("node cap", 2),
    "work_ms": ("work ms", 1),
    "tasks": ("tasks", 0),
    "guarantee": ("guarantee", 0),
    "payload_words": ("payload words", 0),
    "throughput_ops_s": ("ops/s", 0),
    "spread_pct": ("spread %", 1),
    "vs_echo_pct": ("% of echo", 0),
    "p50_ms": ("p50 ms", 2),
    "p99_ms": ("p99 ms", 2),
    "p999_ms": ("p99.9 ms", 2),
    "errors": ("errors", 0),
    "service_cpu_pct": ("service CPU %", 0),
    "broker_cpu_pct": ("broker CPU %", 0),
    "loadgen_cpu_max_pct": ("max client CPU %", 0),
    "cpu_us_per_op_total": ("CPU µs/op", 0),
    "cpu_us_per_op_client": ("clients", 0),
    "cpu_us_per_op_service": ("service", 0),
    "cpu_us_per_op_broker": ("broker", 0),
    "cpu_spread_pct": ("its spread %", 0),
    "rank": ("rank", 0),
    "speedup_mean": ("S(N)", 2),
    "speedup_min": ("S min", 2),
    "speedup_max": ("S max", 2),
    "node_cpu_mean_pct": ("node CPU %", 0),
    "limited_by": ("limited by", 0),
    "bottleneck_cpu_pct": ("its CPU %", 0),
    "ops_a": ("ops/s A", 0),
    "ops_b": ("ops/s B", 0),
    "ops_change_pct": ("ops/s %", 1),
    "p99_change_pct": ("p99 %", 1),
    "cpu_change_pct": ("CPU/op %", 1),
    "noise_pct": ("noise ±%", 0),
    "verdict": ("verdict", 0),
    "trusted": ("trusted", 0),
    "flags": ("flags", 0),
}


def table(names: str, **headers: str) -> list[tuple[str, str, int]]:
    """The (column, header, decimals) of the space-separated column ``names``, as
    :func:`render` takes them; ``headers`` gives some columns another header."""
    return [(n, headers.get(n, COLUMNS[n][0]), COLUMNS[n][1]) for n in names.split()]


#: Columns of the stress table in the report's body, one table per workload.
STRESS_BRIEF = table(
    "middleware clients throughput_ops_s spread_pct vs_echo_pct p50_ms p99_ms cpu_us_per_op_total"
)

#: Columns of the printed stress table and of the report's appendix: (column, header,
#: decimals).
STRESS_TABLE = table(
    "middleware workload clients throughput_ops_s spread_pct vs_echo_pct p50_ms p99_ms "
    "p999_ms errors service_cpu_pct broker_cpu_pct loadgen_cpu_max_pct cpu_us_per_op_total "
    "guarantee payload_words trusted flags"
)


def render(
    frame: pd.DataFrame, spec: Sequence[tuple[str, str, int]], markdown: bool = False
) -> str:
    """``frame`` as an aligned text table, or as a Markdown table. Columns ``frame``
    lacks are left out; a spread over a single repeat reads "n/a"."""
    present = [(c, h, d) for c, h, d in spec if c in frame.columns]
    header = [h for _, h, _ in present]
    body = [
        [_cell(row[c], d, c in REPEAT_ONLY and row.get("repeats", 2) == 1) for c, _, d in present]
        for _, row in frame.iterrows()
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in body]
    return "\n".join(line.rstrip() for line in lines)


#: What identifies one speedup curve point apart from the repeat. Older files had no
#: ``loop`` column in their speedup rows, and the study always runs closed-loop.
SPEEDUP_KEYS = [key for key in CELL_KEYS if key not in ("loop", "nodes")]
#: What a speedup row of an older file lacks, and what it meant then.
SPEEDUP_DEFAULTS = {
    "tasks": 0,
    "node_cpu": 0.0,
    "coordinator_cpu": 0.0,
    "cap_method": "none",
    "guarantee": "at-least-once",
    "payload_words": 0,
}


def complete_speedup_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with the columns older speedup files lack (uncapped, duration-based)."""
    return [{**SPEEDUP_DEFAULTS, **row} for row in rows]


def add_speedup(rows: list[dict[str, Any]]) -> None:
    """Set ``speedup`` = X(N) / X(1) on every row, pairing each run with the 1-node run of
    the same repeat (runs of one repeat are interleaved, so slow drift of the machine
    cancels out). With fixed work X = tasks / T, so this is T(1) / T(N). NaN when that
    1-node run is missing or completed nothing."""

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        full = {**SPEEDUP_DEFAULTS, **row}
        return (*(full[k] for k in SPEEDUP_KEYS), row["repeat"])

    single = {key(r): r["throughput_ops_s"] for r in rows if r["nodes"] == 1}
    for row in rows:
        base = single.get(key(row))
        row["speedup"] = round(row["throughput_ops_s"] / base, 3) if base else math.nan


def _most_common(values: pd.Series) -> str:
    present = values.dropna().astype(str)
    present = present[present != ""]
    return present.mode().iloc[0] if len(present) else ""


def _process_summary(group: pd.DataFrame) -> dict[str, Any]:
    """CPU of nodes, coordinator and brokers, and the bottleneck most repeats had."""
    summary: dict[str, Any] = {}
    for column in group.columns:
        if column.endswith("_pct") and not column.startswith(("bottleneck", "spread")):
            summary[column] = group[column].mean()
    for column in ("coordinator_process", "broker_process"):
        if column in group:
            summary[column] = _most_common(group[column])
    if "bottleneck" in group:
        kind = _most_common(group["bottleneck"])
        same = group[group["bottleneck"].astype(str) == kind]
        summary["bottleneck"] = kind
        summary["bottleneck_process"] = _most_common(same["bottleneck_process"])
        summary["bottleneck_cpu_pct"] = same["bottleneck_cpu_pct"].mean()
        summary["bottleneck_limit_pct"] = same["bottleneck_limit_pct"].mean()
        process = str(summary["bottleneck_process"]).removeprefix("middlewares.")
        named = kind in ("architecture", "capacity")
        summary["limited_by"] = f"{kind}: {process}" if named else kind
    return summary


def summarise_speedup(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per curve point: S(N) over the repeats (mean, min, max, std), the spread
    of the repeats' throughputs, the processes' CPU and what limited the runs."""
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(complete_speedup_rows(rows))
    points = []
    for key, group in frame.groupby([*SPEEDUP_KEYS, "nodes"], sort=True, dropna=False):
        rates = group["throughput_ops_s"]
        speedups = group["speedup"].dropna()
        mean = rates.mean()
        points.append(
            {
                **dict(zip([*SPEEDUP_KEYS, "nodes"], key, strict=True)),
                "fixed_work": bool(group["tasks"].iloc[0]),
                "node_form": ",".join(sorted(set(group["node_form"]))),
                "repeats": len(group),
                "throughput_ops_s": mean,
                "spread_pct": 100 * (rates.max() - rates.min()) / mean if mean else 0.0,
                "speedup_mean": speedups.mean() if len(speedups) else math.nan,
                "speedup_min": speedups.min() if len(speedups) else math.nan,
                "speedup_max": speedups.max() if len(speedups) else math.nan,
                "speedup_std": speedups.std(ddof=1) if len(speedups) > 1 else 0.0,
                "speedup_spread_pct": 100 * (speedups.max() - speedups.min()) / speedups.mean()
                if len(speedups) and speedups.mean()
                else 0.0,
                "p99_ms": group["p99_ms"].max(),
                "service_cpu_pct": group["service_cpu_pct"].mean(),
                **_process_summary(group),
                "trusted": bool(group["trusted"].all()),
                "flags": ";".join(sorted({f for f in ";".join(group["flags"]).split(";") if f})),
            }
        )
    order = {name: index for index, name in enumerate(MIDDLEWARES)}
    frame = pd.DataFrame(points)
    return frame.sort_values(
        ["middleware", "service", "tasks", "node_cpu", "work_ms", "nodes"],
        key=lambda column: column.map(order) if column.name == "middleware" else column,
        ignore_index=True,
    )


#: Columns of the printed and reported speedup table.
SPEEDUP_TABLE = table(
    "middleware service node_cpu work_ms tasks nodes throughput_ops_s spread_pct speedup_mean "
    "speedup_min speedup_max node_cpu_mean_pct limited_by bottleneck_cpu_pct trusted flags"
)
