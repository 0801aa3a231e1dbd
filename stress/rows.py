"""From what a run's clients and sampler collected to one tidy row, and its flags.

The row's columns are those of ``results.files.STRESS_COLUMNS`` (plus what a study adds);
the details keep what a CSV cannot hold: the merged histogram, every process's CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from middlewares.settings import Settings
from results.histogram import encode, merge, summary_ms
from results.limits import LOADGEN_CPU_LIMIT_PCT, RATE_SUSTAINED_SHARE, REPEAT_SPREAD_LIMIT
from stress.plan import RunPlan
from stress.sampler import GroupUsage


@dataclass
class Collected:
    """What a run gathered: the clients' reports, the clients lost, the CPU used."""

    reports: list[dict[str, Any]]
    lost: list[int]
    usage: dict[str, GroupUsage]
    machine_cpu_pct: float


def summarise_run(
    plan: RunPlan, settings: Settings, outcome: Collected, dead_letters: dict[str, int]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's tidy row and its details; ``dead_letters`` is what the middleware set
    aside in the namespace's dead-letter lists or queues, by name."""
    reports = [r for r in outcome.reports if "fatal" not in r]
    fatal = [f"client {r['index']}: {r['fatal']}" for r in outcome.reports if "fatal" in r]

    def total(key: str) -> int:
        return sum(r[key] for r in reports)

    histogram = merge(r["histogram"] for r in reports)
    usage = outcome.usage
    window = fixed_work_seconds(reports) if plan.workload.tasks else plan.duration
    row: dict[str, Any] = {
        "middleware": plan.middleware,
        "service": plan.workload.service,
        "mode": plan.workload.mode,
        "loop": plan.workload.loop,
        "window": plan.workload.window,
        "rate": plan.workload.rate,
        "clients": plan.clients,
        "nodes": plan.nodes,
        "repeat": plan.repeat,
        "work_ms": settings.work_ms,
        "work_kind": settings.work_kind,
        "guarantee": settings.guarantee,
        "payload_words": plan.workload.payload_words,
        "tasks": plan.workload.tasks,
        "duration_s": round(window, 6),
        "warmup_s": plan.warmup,
        "sent": total("sent"),
        "completed": total("completed"),
        "errors": total("errors"),
        "timeouts": total("timeouts"),
        "unconfirmed": total("sent_total") - total("confirmed_total"),
        "dead_lettered": sum(dead_letters.values()),
        "throughput_ops_s": round(total("completed") / window, 1) if window > 0 else 0.0,
        **{key: round(value, 3) for key, value in summary_ms(histogram).items()},
        "service_cpu_pct": usage["service"].cpu_pct,
        "service_cpu_max_pct": usage["service"].cpu_max_pct,
        "service_rss_mb": usage["service"].rss_mb,
        "broker_cpu_pct": usage["brokers"].cpu_pct,
        "loadgen_cpu_pct": usage["clients"].cpu_pct,
        "loadgen_cpu_max_pct": usage["clients"].cpu_max_pct,
        "machine_cpu_pct": outcome.machine_cpu_pct,
        **process_columns(usage),
        "namespace": settings.namespace,
    }
    row.update(cpu_per_operation(usage, row["throughput_ops_s"]))
    flags = run_flags(row, outcome.lost, fatal)
    row["trusted"] = not flags
    row["flags"] = ";".join(flags)
    detail = {
        "histogram": encode(histogram),
        "processes": {
            group: [vars(p) for p in group_usage.processes]
            for group, group_usage in usage.items()
            if group in ("service", "nodes", "clients")
        },
        "error_samples": sorted({e for r in reports for e in r["error_samples"]})[:10] + fatal,
        "clients": [
            {k: r[k] for k in ("index", "pid", "sent", "completed", "errors", "timeouts")}
            for r in reports
        ],
        "settings": settings.as_dict(),
        "dead_letters": dead_letters,
    }
    return row, detail


def fixed_work_seconds(reports: list[dict[str, Any]]) -> float:
    """Fixed work's duration: from the first operation any client sent to the last
    reply any client confirmed (NaN when nothing was confirmed)."""
    firsts = [r["first_issued"] for r in reports if r.get("first_issued") is not None]
    lasts = [r["last_confirmed"] for r in reports if r.get("last_confirmed") is not None]
    return max(lasts) - min(firsts) if firsts and lasts else math.nan


#: The CPU-per-operation columns and the usage group each one sums (the total sums all).
CPU_PER_OP_GROUPS = {
    "cpu_us_per_op_client": "clients",
    "cpu_us_per_op_service": "service",
    "cpu_us_per_op_broker": "brokers",
}


def cpu_per_operation(usage: dict[str, GroupUsage], throughput_ops_s: float) -> dict[str, float]:
    """CPU microseconds per completed operation of the load generators, the service
    processes and the broker servers, each and in total (NaN when nothing completed).

    A group's CPU over the measurement window divided by the operations completed in
    it: its mean CPU (percent of one core) over the completion rate. This moves far
    less than throughput on a shared machine, since time stolen by other load is not
    counted; the broker's share includes whatever else that shared broker served
    during the window. A middleware without a broker has 0 there.
    """
    if not throughput_ops_s > 0:
        return {column: math.nan for column in (*CPU_PER_OP_GROUPS, "cpu_us_per_op_total")}
    # percent of one core / (ops per second) * 1e6 / 100 = microseconds per operation
    columns = {
        column: round(usage[group].cpu_pct * 1e4 / throughput_ops_s, 1)
        for column, group in CPU_PER_OP_GROUPS.items()
    }
    columns["cpu_us_per_op_total"] = round(sum(columns.values()), 1)
    return columns


def process_columns(usage: dict[str, GroupUsage]) -> dict[str, Any]:
    """The CPU of the busiest node, of the busiest other service process (a
    coordinator) and of the busiest broker process on the requests' path, in percent of
    one core: what the bottleneck of a run is read from (see :mod:`results.bottleneck`)."""
    nodes = usage["nodes"].processes
    node_pids = {p.pid for p in nodes}
    others = [p for p in usage["service"].processes if p.pid not in node_pids]
    coordinator = max(others, key=lambda p: p.cpu_pct, default=None)
    broker = max(usage["brokers"].processes, key=lambda p: p.cpu_pct, default=None)
    node_cpu = [p.cpu_pct for p in nodes]
    return {
        "node_cpu_max_pct": max(node_cpu, default=math.nan),
        "node_cpu_mean_pct": round(sum(node_cpu) / len(node_cpu), 1) if node_cpu else math.nan,
        "coordinator_cpu_max_pct": coordinator.cpu_pct if coordinator else math.nan,
        "coordinator_process": coordinator.role if coordinator else "",
        "broker_cpu_max_pct": broker.cpu_pct if broker else math.nan,
        "broker_process": broker.role if broker else "",
    }


def run_flags(row: dict[str, Any], lost: list[int], fatal: list[str]) -> list[str]:
    """Why a run's figures should not be trusted; empty when there is no reason."""
    flags = []
    if lost:
        flags.append(f"clients-lost={len(lost)}")
    if fatal:
        flags.append(f"clients-failed={len(fatal)}")
    if row["loadgen_cpu_max_pct"] >= LOADGEN_CPU_LIMIT_PCT:
        flags.append(f"loadgen-cpu={row['loadgen_cpu_max_pct']:.0f}%")
    if row["unconfirmed"]:
        flags.append(f"unconfirmed={row['unconfirmed']}")
    if row.get("dead_lettered"):
        flags.append(f"dead-lettered={row['dead_lettered']}")
    if row["completed"] == 0:
        flags.append("nothing-completed")
    if row["rate"] and row["throughput_ops_s"] < RATE_SUSTAINED_SHARE * row["rate"]:
        flags.append("rate-not-sustained")
    if row["tasks"] and row["completed"] < row["tasks"]:
        flags.append(f"unfinished={row['tasks'] - row['completed']}")
    return flags


def flag_repeat_spread(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    """Flag every row whose group of repeats (same ``keys``) varies by more than 10%.

    The spread is (max - min) / mean of the throughputs; it is stored in
    ``repeat_spread`` on every row so tables and plots can show it.
    """
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    for group in groups.values():
        rates = [r["throughput_ops_s"] for r in group]
        mean = sum(rates) / len(rates)
        spread = (max(rates) - min(rates)) / mean if mean > 0 else 0.0
        for row in group:
            row["repeat_spread"] = round(spread, 3)
            if len(group) > 1 and spread > REPEAT_SPREAD_LIMIT:
                flags = [f for f in row["flags"].split(";") if f and not f.startswith("repeat-")]
                row["flags"] = ";".join([*flags, f"repeat-spread={100 * spread:.0f}%"])
                row["trusted"] = False
