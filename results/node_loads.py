"""Each node's share of the work in a speedup study's widest runs."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from results import plots


def node_loads(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Each node's share of the work in the runs with the most nodes, per variant.

    A node's share is its share of the requests served, from the per-node counters the
    n-node form publishes. When a run could not read them it is its share of the
    CPU seconds of the node processes, recognised as the role (``python -m`` module)
    that runs exactly N times in an N-node deployment.
    """
    records = []
    for run in runs:
        row = run["row"]
        if row["nodes"] < 2:
            continue
        shares = _counter_shares(run) or _cpu_shares(run)
        if shares is None:
            continue
        measure, values = shares
        total = sum(values)
        for number, value in enumerate(values, 1):
            records.append(
                {
                    "middleware": row["middleware"],
                    "service": row["service"],
                    "work_ms": row["work_ms"],
                    "node_cpu": row.get("node_cpu", 0.0),
                    "fixed_work": bool(row.get("tasks")),
                    "nodes": row["nodes"],
                    "repeat": row["repeat"],
                    "node": number,
                    "share": value / total if total else math.nan,
                    "measure": measure,
                }
            )
    frame = pd.DataFrame(records)
    if frame.empty:
        return frame
    keys = ["middleware", "service", *plots.VARIANT_KEYS]
    widest = frame.groupby(keys)["nodes"].transform("max")
    return frame[frame["nodes"] == widest]


def _counter_shares(run: dict[str, Any]) -> tuple[str, list[float]] | None:
    counters = run["detail"].get("node_counters") or {}
    if len(counters) != run["row"]["nodes"]:
        return None
    return "requests served (node counters)", [counters[node] for node in sorted(counters)]


def _cpu_shares(run: dict[str, Any]) -> tuple[str, list[float]] | None:
    by_role: dict[str, list[dict[str, Any]]] = {}
    for process in run["detail"].get("processes", {}).get("service", []):
        by_role.setdefault(process["role"], []).append(process)
    nodes = [group for group in by_role.values() if len(group) == run["row"]["nodes"]]
    if not nodes:
        return None
    chosen = sorted(nodes[0], key=lambda p: p["pid"])
    return "node processes' CPU time", [p["cpu_s"] for p in chosen]
