"""``python -m results compare RUN_A RUN_B``: how a second run differs from a first.

Rows of the two runs' stress studies are matched on what was measured (middleware,
workload, clients, nodes, offered rate, guarantee), and those of their speedup studies
on the curve point (middleware, service, node cap, work, nodes); for each, the change in
throughput, p99 and CPU per operation, and a verdict on the throughput: *better*,
*worse* or *within noise*.
The noise band of a row is the larger of the two runs' spreads over their repeats; with
a single repeat it is :data:`DEFAULT_NOISE_PCT`. Conditions that differ between the
runs (simulated work, payload size) are listed, since they explain a difference.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from results.data import load
from results.files import ResultsFileError, csv_path
from results.limits import REPEAT_SPREAD_LIMIT
from results.tables import render, table

#: The noise band, in percent, of a row measured only once in either run.
DEFAULT_NOISE_PCT = 100 * REPEAT_SPREAD_LIMIT


@dataclass(frozen=True)
class Kind:
    """How the rows of one study are matched and labelled.

    Attributes:
        study: ``stress`` or ``speedup``.
        keys: What identifies a row in both runs.
        conditions: What may differ between the runs and is reported when it does.
        labels: The identifying columns the printed table shows: (column, header).
    """

    study: str
    keys: tuple[str, ...]
    conditions: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]


STRESS = Kind(
    "stress",
    ("middleware", "workload", "clients", "nodes", "rate", "guarantee"),
    ("work_ms", "payload_words"),
    (("middleware", "middleware"), ("workload", "workload"), ("clients", "clients")),
)
SPEEDUP = Kind(
    "speedup",
    ("middleware", "service", "mode", "window", "clients", "node_cpu", "tasks", "work_ms",
     "nodes"),
    (),
    (("middleware", "middleware"), ("service", "service"), ("node_cpu", "node cap"),
     ("work_ms", "work ms"), ("nodes", "nodes")),
)  # fmt: skip

#: The measured columns of the printed table, after a study's labels.
CHANGES = table("ops_a ops_b ops_change_pct p99_change_pct cpu_change_pct noise_pct verdict")


def table_spec(kind: Kind) -> list[tuple[str, str, int]]:
    """The printed table's columns for ``kind``."""
    return [(column, header, 2) for column, header in kind.labels] + CHANGES


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


def _summaries(directory: Path) -> dict[str, pd.DataFrame]:
    """The summaries of the studies found in ``directory``, each with its CPU per op."""
    if not any(csv_path(directory, study).exists() for study in ("stress", "speedup")):
        raise ResultsFileError(
            f"{directory} has no stress.csv or speedup.csv: give the directory of a run"
        )
    data = load(directory)
    frames = {"stress": data.stress_guarantees, "speedup": data.speedup_summary}
    return {
        study: frame.assign(cpu_per_op=cpu_us_per_op(frame))
        for study, frame in frames.items()
        if not frame.empty
    }


def compare_runs(first: Path, second: Path) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Per study both runs hold, the matched rows with their changes and verdicts; and
    notes on what the two runs do not share (rows or studies in one only, conditions
    that differ)."""
    a, b = _summaries(first), _summaries(second)
    tables, notes = {}, []
    for kind in (STRESS, SPEEDUP):
        if kind.study not in a or kind.study not in b:
            if kind.study in a or kind.study in b:
                notes.append(f"only one run has a {kind.study} study: not compared")
            continue
        table, kind_notes = _compare(kind, a[kind.study], b[kind.study], first, second)
        tables[kind.study] = table
        notes += kind_notes
    return tables, notes


def _compare(
    kind: Kind, a: pd.DataFrame, b: pd.DataFrame, first: Path, second: Path
) -> tuple[pd.DataFrame, list[str]]:
    keys = list(kind.keys)
    kept = [*keys, *kind.conditions, "throughput_ops_s", "p99_ms", "cpu_per_op",
            "spread_pct", "repeats"]  # fmt: skip
    merged = a[kept].merge(b[kept], on=keys, how="outer", suffixes=("_a", "_b"),
                           indicator=True)  # fmt: skip
    notes = []
    for side, name in (("left_only", first), ("right_only", second)):
        alone = merged[merged["_merge"] == side]
        if not alone.empty:
            listed = [" ".join(f"{row[c]}" for c, _ in kind.labels) for _, row in alone.iterrows()]
            more = f", and {len(listed) - 4} more" if len(listed) > 4 else ""
            notes.append(
                f"{len(listed)} {kind.study} row(s) only in {name}, not compared: "
                + ", ".join(listed[:4])
                + more
            )
    both = merged[merged["_merge"] == "both"].copy()
    for condition in kind.conditions:
        differ = both[both[f"{condition}_a"] != both[f"{condition}_b"]]
        for (before, after), _ in differ.groupby([f"{condition}_a", f"{condition}_b"]):
            notes.append(f"{kind.study}: {condition} differs: {before:g} in A, {after:g} in B")
    rows = []
    for row in both.itertuples():
        change = _change(row.throughput_ops_s_a, row.throughput_ops_s_b)
        noise = _noise(row)
        rows.append(
            {
                **{k: getattr(row, k) for k in keys},
                "ops_a": row.throughput_ops_s_a,
                "ops_b": row.throughput_ops_s_b,
                "ops_change_pct": change,
                "p99_change_pct": _change(row.p99_ms_a, row.p99_ms_b),
                "cpu_change_pct": _change(row.cpu_per_op_a, row.cpu_per_op_b),
                "noise_pct": noise,
                "verdict": verdict(change, noise),
            }
        )
    return pd.DataFrame(rows, columns=[*keys, *(c for c, _, _ in CHANGES)]), notes


def regressions(table: pd.DataFrame, limit_pct: float) -> pd.DataFrame:
    """Rows judged worse whose throughput fell by more than ``limit_pct`` percent."""
    return table[(table["verdict"] == "worse") & (table["ops_change_pct"] < -limit_pct)]


def run_compare(first: Path, second: Path, fail_on_regression: float | None) -> int:
    """Print the comparison of two runs; exit status (1 on a regression beyond the
    limit, 2 when a directory cannot be read)."""
    try:
        tables, notes = compare_runs(first, second)
    except ResultsFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"A = {first}\nB = {second}\nchanges from A to B, in percent of A")
    for kind in (STRESS, SPEEDUP):
        table = tables.get(kind.study)
        if table is not None and not table.empty:
            print(f"\n{kind.study}\n" + render(table, table_spec(kind)))
            counts = table["verdict"].value_counts()
            print(", ".join(f"{counts.get(v, 0)} {v}" for v in ("better", "worse", "within noise")))
    if any((table["noise_pct"] == DEFAULT_NOISE_PCT).any() for table in tables.values()):
        notes.append(
            f"rows with one repeat in either run use a noise band of ±{DEFAULT_NOISE_PCT:g}%; "
            "on a busy shared machine single runs differ by more (--profile standard or "
            "--repeat 3 measures the spread)"
        )
    for note in notes:
        print(f"note: {note}")
    if all(table.empty for table in tables.values()):
        print("error: the two runs have no row in common", file=sys.stderr)
        return 2
    if fail_on_regression is None:
        return 0
    failed = sum(len(regressions(table, fail_on_regression)) for table in tables.values())
    if not failed:
        print(f"no row lost more than {fail_on_regression:g}% of its throughput")
        return 0
    print(
        f"REGRESSION: {failed} row(s) lost more than {fail_on_regression:g}% of their "
        "throughput beyond the noise",
        file=sys.stderr,
    )
    return 1
