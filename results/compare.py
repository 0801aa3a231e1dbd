"""``python -m results compare RUN_A RUN_B``: how a second run differs from a first.

Rows of the two stress studies are matched on what was measured (middleware, workload,
clients, nodes, offered rate, guarantee); for each, the change in throughput, p99 and
CPU per operation, and a verdict on the throughput: *better*, *worse* or *within noise*.
The noise band of a row is the larger of the two runs' spreads over their repeats; with
a single repeat it is :data:`DEFAULT_NOISE_PCT`. Conditions that differ between the
runs (simulated work, payload size) are listed, since they explain a difference.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from results.data import load
from results.files import ResultsFileError, csv_path
from results.limits import REPEAT_SPREAD_LIMIT
from results.tables import render

#: The noise band, in percent, of a row measured only once in either run.
DEFAULT_NOISE_PCT = 100 * REPEAT_SPREAD_LIMIT
#: What identifies a row in both runs.
MATCH_KEYS = ["middleware", "workload", "clients", "nodes", "rate", "guarantee"]
#: Conditions that may differ between the runs, and are reported when they do.
CONDITIONS = ["work_ms", "payload_words"]

TABLE = [
    ("middleware", "middleware", 0),
    ("workload", "workload", 0),
    ("clients", "clients", 0),
    ("ops_a", "ops/s A", 0),
    ("ops_b", "ops/s B", 0),
    ("ops_change_pct", "ops/s %", 1),
    ("p99_change_pct", "p99 %", 1),
    ("cpu_change_pct", "CPU/op %", 1),
    ("noise_pct", "noise ±%", 0),
    ("verdict", "verdict", 0),
]


def cpu_us_per_op(summary: pd.DataFrame) -> pd.Series:
    """Total CPU µs per operation of every row: the recorded column when the study wrote
    it, otherwise from the clients', service's and broker's CPU and the throughput."""
    if "cpu_us_per_op_total" in summary and summary["cpu_us_per_op_total"].notna().all():
        return summary["cpu_us_per_op_total"]
    busy = sum(
        summary[c].fillna(0.0) if c in summary else 0.0
        for c in ("service_cpu_pct", "broker_cpu_pct", "loadgen_cpu_pct")
    )
    # CPU % of one core over the window / operations per second = 1e4 µs per operation.
    return 1e4 * busy / summary["throughput_ops_s"].where(summary["throughput_ops_s"] > 0)


def _change(before: float, after: float) -> float:
    if not before or math.isnan(before) or math.isnan(after):
        return math.nan
    return 100 * (after - before) / before


def _noise(row: Any) -> float:
    spreads = [row.spread_pct_a, row.spread_pct_b]
    if min(row.repeats_a, row.repeats_b) < 2 or any(math.isnan(s) for s in spreads):
        return DEFAULT_NOISE_PCT
    return max(spreads)


def verdict(change_pct: float, noise_pct: float) -> str:
    """``better``, ``worse`` or ``within noise`` for a throughput change in percent."""
    if math.isnan(change_pct):
        return "n/a"
    if change_pct > noise_pct:
        return "better"
    if change_pct < -noise_pct:
        return "worse"
    return "within noise"


def _summary(directory: Path) -> pd.DataFrame:
    if not csv_path(directory, "stress").exists():
        raise ResultsFileError(f"{directory} has no stress.csv: give a directory of a stress run")
    summary = load(directory).stress_guarantees
    if summary.empty:
        raise ResultsFileError(f"{directory} holds no measured stress run")
    return summary.assign(cpu_per_op=cpu_us_per_op(summary))


def compare_runs(first: Path, second: Path) -> tuple[pd.DataFrame, list[str]]:
    """The matched rows with their changes and verdicts, and notes on what the two runs
    do not share (rows measured in one only, conditions that differ)."""
    a, b = _summary(first), _summary(second)
    kept = [*MATCH_KEYS, *CONDITIONS, "throughput_ops_s", "p99_ms", "cpu_per_op",
            "spread_pct", "repeats"]  # fmt: skip
    merged = a[kept].merge(b[kept], on=MATCH_KEYS, how="outer", suffixes=("_a", "_b"),
                           indicator=True)  # fmt: skip
    notes = []
    for side, name in (("left_only", first), ("right_only", second)):
        alone = merged[merged["_merge"] == side]
        if not alone.empty:
            listed = ", ".join(
                f"{r.middleware} {r.workload} clients={r.clients}" for r in alone.itertuples()
            )
            notes.append(f"only in {name}: {listed}")
    both = merged[merged["_merge"] == "both"].copy()
    for condition in CONDITIONS:
        differ = both[both[f"{condition}_a"] != both[f"{condition}_b"]]
        for (before, after), _ in differ.groupby([f"{condition}_a", f"{condition}_b"]):
            notes.append(f"{condition} differs: {before:g} in A, {after:g} in B")
    rows = []
    for row in both.itertuples():
        change = _change(row.throughput_ops_s_a, row.throughput_ops_s_b)
        noise = _noise(row)
        rows.append(
            {
                **{k: getattr(row, k) for k in MATCH_KEYS},
                "ops_a": row.throughput_ops_s_a,
                "ops_b": row.throughput_ops_s_b,
                "ops_change_pct": change,
                "p99_change_pct": _change(row.p99_ms_a, row.p99_ms_b),
                "cpu_change_pct": _change(row.cpu_per_op_a, row.cpu_per_op_b),
                "noise_pct": noise,
                "verdict": verdict(change, noise),
            }
        )
    return pd.DataFrame(rows, columns=[*MATCH_KEYS, *(c for c, _, _ in TABLE[3:])]), notes


def regressions(table: pd.DataFrame, limit_pct: float) -> pd.DataFrame:
    """Rows judged worse whose throughput fell by more than ``limit_pct`` percent."""
    return table[(table["verdict"] == "worse") & (table["ops_change_pct"] < -limit_pct)]


def run_compare(first: Path, second: Path, fail_on_regression: float | None) -> int:
    """Print the comparison of two runs; exit status (1 on a regression beyond the
    limit, 2 when a directory cannot be read)."""
    try:
        table, notes = compare_runs(first, second)
    except ResultsFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"A = {first}\nB = {second}\nchanges from A to B, in percent of A\n")
    print(render(table, TABLE))
    counts = table["verdict"].value_counts()
    print("\n" + ", ".join(f"{counts.get(v, 0)} {v}" for v in ("better", "worse", "within noise")))
    for note in notes:
        print(f"note: {note}")
    if fail_on_regression is None:
        return 0
    failed = regressions(table, fail_on_regression)
    if failed.empty:
        print(f"no row lost more than {fail_on_regression:g}% of its throughput")
        return 0
    print(
        f"REGRESSION: {len(failed)} row(s) lost more than {fail_on_regression:g}% of their "
        "throughput beyond the noise",
        file=sys.stderr,
    )
    return 1
