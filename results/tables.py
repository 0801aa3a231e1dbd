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
from stress.histogram import merge, summary_ms

#: A configuration: everything but the repeat number.
CONFIG_KEYS = ["middleware", "service", "mode", "window", "rate", "clients", "nodes", "work_ms"]
#: Which broker's CPU matters for which middleware.
BROKER_COLUMN = {"redis": "redis_cpu_pct", "rabbitmq": "rabbitmq_cpu_pct"}


def workload_label(service: str, mode: str, window: int) -> str:
    """``insult``, ``filter``, ``filter-pipelined(16)`` or ``echo``."""
    return service if mode == "sync" else f"{service}-{mode}({window})"


def summarise(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per configuration, from the ``runs`` list of a study's JSON."""
    if not runs:
        return pd.DataFrame()
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(tuple(run["row"][k] for k in CONFIG_KEYS), []).append(run)
    summary = []
    for key, members in groups.items():
        rows = [m["row"] for m in members]
        rates = [r["throughput_ops_s"] for r in rows]
        mean = sum(rates) / len(rates)
        latency = summary_ms(merge(m["detail"]["histogram"] for m in members))
        broker = BROKER_COLUMN.get(rows[0]["middleware"])
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
                "broker_cpu_pct": _mean(r[broker] for r in rows) if broker else math.nan,
                "loadgen_cpu_pct": _mean(r["loadgen_cpu_pct"] for r in rows),
                "loadgen_cpu_max_pct": max(r["loadgen_cpu_max_pct"] for r in rows),
                "machine_cpu_pct": _mean(r["machine_cpu_pct"] for r in rows),
                "trusted": all(r["trusted"] for r in rows),
                "flags": ";".join(flags),
            }
        )
    return pd.DataFrame(summary)


def _mean(values: Any) -> float:
    numbers = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(numbers) / len(numbers) if numbers else math.nan


def with_baseline(summary: pd.DataFrame) -> pd.DataFrame:
    """Add ``vs_echo_pct``: each request/response workload's throughput as a share of the
    echo baseline of the same middleware, client count and work, when the study ran one."""
    if summary.empty:
        return summary
    echo = summary[summary["service"] == "echo"].set_index(["middleware", "clients", "work_ms"])
    shares = []
    for row in summary.itertuples():
        key = (row.middleware, row.clients, row.work_ms)
        # A pipelined workload is not a round trip, so the echo is no yardstick for it.
        if row.service == "echo" or row.mode != "sync" or key not in echo.index:
            shares.append(math.nan)
        else:
            base = echo.loc[key, "throughput_ops_s"]
            shares.append(100 * row.throughput_ops_s / base if base else math.nan)
    return summary.assign(vs_echo_pct=shares)


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}"
    return str(value)


#: Columns of the printed and reported stress table: (column, header, decimals).
STRESS_TABLE = [
    ("middleware", "middleware", 0),
    ("workload", "workload", 0),
    ("clients", "clients", 0),
    ("throughput_ops_s", "ops/s", 0),
    ("spread_pct", "spread %", 1),
    ("vs_echo_pct", "% of echo", 0),
    ("p50_ms", "p50 ms", 2),
    ("p99_ms", "p99 ms", 2),
    ("p999_ms", "p99.9 ms", 2),
    ("errors", "errors", 0),
    ("service_cpu_pct", "service CPU %", 0),
    ("broker_cpu_pct", "broker CPU %", 0),
    ("loadgen_cpu_max_pct", "max client CPU %", 0),
    ("trusted", "trusted", 0),
    ("flags", "flags", 0),
]


def render(
    frame: pd.DataFrame, spec: Sequence[tuple[str, str, int]], markdown: bool = False
) -> str:
    """``frame`` as an aligned text table, or as a Markdown table."""
    present = [(c, h, d) for c, h, d in spec if c in frame.columns]
    header = [h for _, h, _ in present]
    body = [[_cell(row[c], d) for c, _, d in present] for _, row in frame.iterrows()]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in body]
    return "\n".join(line.rstrip() for line in lines)


#: What identifies one speedup curve point apart from the repeat.
SPEEDUP_KEYS = [
    "middleware",
    "service",
    "mode",
    "window",
    "rate",
    "clients",
    "work_ms",
    "work_kind",
]


def add_speedup(rows: list[dict[str, Any]]) -> None:
    """Set ``speedup`` = X(N) / X(1) on every row, pairing each run with the 1-node run of
    the same repeat (runs of one repeat are interleaved, so slow drift of the machine
    cancels out). NaN when that 1-node run is missing or completed nothing."""
    single = {
        (*(r[k] for k in SPEEDUP_KEYS), r["repeat"]): r["throughput_ops_s"]
        for r in rows
        if r["nodes"] == 1
    }
    for row in rows:
        base = single.get((*(row[k] for k in SPEEDUP_KEYS), row["repeat"]))
        row["speedup"] = round(row["throughput_ops_s"] / base, 3) if base else math.nan


def summarise_speedup(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per curve point: S(N) over the repeats (mean, min, max, std) and the
    spread of the repeats' throughputs."""
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    points = []
    for key, group in frame.groupby([*SPEEDUP_KEYS, "nodes"], sort=True, dropna=False):
        rates = group["throughput_ops_s"]
        speedups = group["speedup"].dropna()
        mean = rates.mean()
        points.append(
            {
                **dict(zip([*SPEEDUP_KEYS, "nodes"], key, strict=True)),
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
                "trusted": bool(group["trusted"].all()),
                "flags": ";".join(sorted({f for f in ";".join(group["flags"]).split(";") if f})),
            }
        )
    order = {name: index for index, name in enumerate(MIDDLEWARES)}
    frame = pd.DataFrame(points)
    return frame.sort_values(
        ["middleware", "service", "work_ms", "nodes"],
        key=lambda column: column.map(order) if column.name == "middleware" else column,
        ignore_index=True,
    )


#: Columns of the printed and reported speedup table.
SPEEDUP_TABLE = [
    ("middleware", "middleware", 0),
    ("service", "service", 0),
    ("work_ms", "work ms", 1),
    ("nodes", "nodes", 0),
    ("node_form", "deployed as", 0),
    ("throughput_ops_s", "ops/s", 0),
    ("spread_pct", "spread %", 1),
    ("speedup_mean", "S(N)", 2),
    ("speedup_min", "S min", 2),
    ("speedup_max", "S max", 2),
    ("p99_ms", "worst p99 ms", 2),
    ("service_cpu_pct", "service CPU %", 0),
    ("trusted", "trusted", 0),
    ("flags", "flags", 0),
]
