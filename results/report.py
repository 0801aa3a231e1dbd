"""Figures and ``REPORT.md`` from a results directory's files, and the printed summary.

Nothing here runs a measurement: everything comes from ``stress.csv/json`` and
``speedup.csv/json``, so ``python -m results report <dir>`` redraws a report at any time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from middlewares.registry import MIDDLEWARES
from results import plots
from results.files import read_document
from results.speedup_report import node_loads, speedup_section
from results.tables import (
    SPEEDUP_TABLE,
    STRESS_TABLE,
    render,
    summarise,
    summarise_speedup,
    with_baseline,
)
from stress.rows import LOADGEN_CPU_LIMIT_PCT

#: Targets of the issue, checked on every report.
BASELINE_TARGET_PCT = 70.0
SPREAD_TARGET_PCT = 10.0
#: A process this busy is saturated: it is what limits the run.
SATURATED_PCT = 85.0

MECHANISMS = {
    "xmlrpc": (
        "Synchronous request/response over HTTP/1.1 with XML bodies. Each call blocks the "
        "client for a full round trip, and XML is the costliest encoding of the four to "
        "build and parse in Python. Client and server are coupled in space (the client "
        "must know host and port) and in time (the server must be up at the moment of the "
        "call). Keep-alive connections spare a TCP handshake per call; the HTTP reply is "
        "the only acknowledgement. The server runs connections on threads of one Python "
        "process, so under the GIL its throughput stops growing once that process uses "
        "one core."
    ),
    "pyro": (
        "Remote objects: blocking calls, coupled in time like XML-RPC, but decoupled in "
        "location by the name server (clients look objects up by name, then talk to them "
        "directly). Each proxy keeps its connection open, and serpent is a cheaper "
        "encoding than XML. The server serves connections from a thread pool in one "
        "Python process, so, as with XML-RPC, the GIL caps it at about one core."
    ),
    "redis": (
        "Indirect communication through lists: a client pushes a JSON request and blocks "
        "on its own reply list; service processes pop requests. Clients and services "
        "share only names (decoupled in space) and requests wait in Redis while no "
        "service runs (decoupled in time). Every operation crosses the broker twice "
        "(request and reply), each a network round trip. Redis executes commands on one "
        "thread and does little per command, so the Python processes around it (JSON, "
        "service logic) are usually what saturates. The filter's reliable-queue pattern "
        "removes a task only after its result is written: one more command per task, and "
        "nothing is lost if a worker dies."
    ),
    "rabbitmq": (
        "AMQP messaging: a request is published, routed to a queue, delivered to a "
        "consumer and acknowledged; the reply returns through the client's reply queue "
        "with a correlation id. Decoupled in space and time like Redis, with more broker "
        "work per message (routing, delivery tracking, acknowledgements, a durable task "
        "queue). Workers ack only after publishing the result and hold a bounded prefetch, "
        "which is what lets a window of tasks in flight keep workers busy without a round "
        "trip per task, and what makes a killed worker lose nothing. pika's blocking "
        "connection handles one stream of frames per client connection."
    ),
}


@dataclass
class ResultsData:
    """What a results directory holds, summarised."""

    directory: Path
    stress: dict[str, Any] | None
    stress_summary: pd.DataFrame
    speedup: dict[str, Any] | None
    speedup_summary: pd.DataFrame
    node_loads: pd.DataFrame


def load(directory: Path) -> ResultsData:
    """Read and summarise every study found in ``directory``."""
    stress = read_document(directory, "stress")
    speedup = read_document(directory, "speedup")
    stress_summary = with_baseline(summarise(stress["runs"])) if stress else pd.DataFrame()
    if stress and not stress_summary.empty:
        stress_summary.attrs["cpu_count"] = stress["environment"].get("cpu_count")
    speedup_rows = [run["row"] for run in speedup["runs"]] if speedup else []
    return ResultsData(
        directory=directory,
        stress=stress,
        stress_summary=stress_summary,
        speedup=speedup,
        speedup_summary=summarise_speedup(speedup_rows),
        node_loads=node_loads(speedup["runs"]) if speedup else pd.DataFrame(),
    )


def print_summary(directory: Path, studies: tuple[str, ...] = ("stress", "speedup")) -> None:
    """Print the summary tables of ``studies`` found in ``directory``."""
    data = load(directory)
    if "stress" in studies and not data.stress_summary.empty:
        print("\nstress (throughput = mean of repeats; latency from merged histograms)")
        print(render(data.stress_summary, STRESS_TABLE))
    if "speedup" in studies and not data.speedup_summary.empty:
        print("\nspeedup S(N) = X(N) / X(1), paired by repeat")
        print(render(data.speedup_summary, SPEEDUP_TABLE))


def build_report(directory: Path) -> Path:
    """Draw every figure and write ``REPORT.md`` in ``directory``; returns its path."""
    data = load(directory)
    figures = directory / "figures"
    sections = [_header(data), _machine(data)]
    if not data.stress_summary.empty:
        sections += [
            _method(data),
            _calibration(data),
            _stress(data, figures),
            _baseline(data),
            _ranking(data),
        ]
    if data.speedup and not data.speedup_summary.empty:
        sections.append(
            speedup_section(data.speedup, data.speedup_summary, data.node_loads, directory)
        )
    sections.append(_trust(data))
    report = directory / "REPORT.md"
    report.write_text("\n\n".join(s for s in sections if s).rstrip() + "\n", encoding="utf-8")
    return report


def _relative(path: Path, directory: Path) -> str:
    return path.relative_to(directory).as_posix()


def _images(paths: list[Path], directory: Path, caption: str) -> str:
    return "\n\n".join(f"![{caption}]({_relative(p, directory)})" for p in paths)


def _header(data: ResultsData) -> str:
    studies = [n for n, d in (("stress", data.stress), ("speedup", data.speedup)) if d]
    files = ", ".join(f"`{s}.csv`, `{s}.json`" for s in studies) or "no study files"
    commands = [f"`{' '.join(d['command'])}`" for d in (data.stress, data.speedup) if d]
    return (
        "# insultbench results\n\n"
        f"Generated by `python -m results report {data.directory}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC from {files}; rerun it rather than "
        "editing this file. Produced by " + (" and ".join(commands) or "nothing yet") + "."
    )


def _machine(data: ResultsData) -> str:
    document = data.stress or data.speedup
    if not document:
        return ""
    env = document["environment"]
    libraries = ", ".join(f"{k} {v}" for k, v in env["libraries"].items())
    commit = ", ".join(
        f"{name} at {_commit(d['environment'])}"
        for name, d in (("stress", data.stress), ("speedup", data.speedup))
        if d
    )
    rows = [
        ("CPU", f"{env['cpu_model']}, {env['cpu_count']} logical cores"),
        ("Memory", f"{env['memory_gb']} GiB"),
        ("OS", env["platform"]),
        ("Python", f"{env['implementation']} {env['python']}"),
        ("Redis server", env["redis_server"]),
        ("RabbitMQ server", env["rabbitmq_server"]),
        ("Libraries", libraries),
        ("Load average at start", ", ".join(map(str, env["load_average"]))),
        ("Commit", commit),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (
        "## Machine\n\n| | |\n|---|---|\n" + table + "\n\n"
        "Clients, services and brokers all share this machine, as do other people's "
        "processes: the broker CPU figures include whatever else used the broker."
    )


def _commit(environment: dict[str, Any]) -> str:
    git = environment.get("git", {})
    return git.get("commit", "unknown")[:12] + (" (with local changes)" if git.get("dirty") else "")


def _method(data: ResultsData) -> str:
    config = data.stress["config"]
    loop = (
        f"an open loop at {config['rate']:g} operations/s in all, latency counted from each "
        "request's intended send time"
        if config.get("rate")
        else "a closed loop: each client sends its next request as soon as the reply to "
        "the previous one arrived"
    )
    return (
        "## How the numbers were taken\n\n"
        f"- Every run deploys one service on one middleware through the launcher, in a "
        f"namespace and on ports of its own, and deletes the namespace afterwards.\n"
        f"- Each client is a separate process with one persistent connection, in {loop}. "
        f"Client counts: {', '.join(map(str, config['clients']))}.\n"
        f"- {config['warmup']:g} s of warm-up, then a {config['duration']:g} s measurement "
        f"window; {config['repeat']} repeat(s), interleaved (repeat is the outer loop).\n"
        "- Throughput counts only operations whose reply arrived within the window and was "
        "right (the exact censored text, the exact echo, a reply of the right type).\n"
        "- Every latency goes into an HDR histogram in its client process (µs, 3 digits); "
        "histograms are merged across processes and repeats, never averaged.\n"
        f"- InsultService mix: `{config['mix']}` (adds cycle through 32 fixed values, so "
        f"the store stays bounded). Filter: submit-and-wait, and pipelined with "
        f"{config['window']} tasks in flight per client.\n"
        "- CPU is measured per process over the window (100% = one core); memory is the "
        "peak resident set."
    )


def _calibration(data: ResultsData) -> str:
    calibration = data.stress.get("loadgen_calibration")
    if not calibration:
        return ""
    rows = "\n".join(
        f"| {c['workload']} | {c['ops_s_per_client']:,.0f} | {c['client_cpu_pct']:.0f} | "
        f"{c['cpu_us_per_op']:.1f} | {c['ops_s_per_core']:,.0f} |"
        for c in calibration
    )
    summary = data.stress_summary
    per_client = (summary["throughput_ops_s"] / summary["clients"]).max()
    busiest = summary["loadgen_cpu_max_pct"].max()
    capacity = min(c["ops_s_per_core"] for c in calibration)
    return (
        "## Load generator capacity\n\n"
        "One client process against an instant in-process fake service (no network): what "
        "the harness itself costs per operation. CPU time per operation does not depend on "
        "how much of a core the shared machine granted the client, so it gives the "
        "operations one core can drive.\n\n"
        "| workload | ops/s measured | client CPU % | CPU µs per op | ops/s per core |\n"
        "|---|---|---|---|---|\n"
        f"{rows}\n\n"
        f"The fastest real run drove {per_client:,.0f} ops/s per client, "
        f"{capacity / per_client:,.0f}x below the smallest capacity per core above, and "
        f"the busiest client process used {busiest:.0f}% of a core (runs at "
        f"{LOADGEN_CPU_LIMIT_PCT:.0f}% or more are flagged). "
        + (
            "The load generator's own cost is therefore not what limits the figures below."
            if busiest < LOADGEN_CPU_LIMIT_PCT and capacity > 10 * per_client
            else "**Some figures below may be limited by the load generator itself.**"
        )
    )


def _stress(data: ResultsData, figures: Path) -> str:
    summary = data.stress_summary
    parts = ["## Single-node throughput and latency"]
    throughput = {p.stem: p for p in plots.throughput_vs_clients(summary, figures)}
    latency = {p.stem: p for p in plots.latency_percentiles(summary, figures)}
    cpu = {p.stem: p for p in plots.cpu_breakdown(summary, figures)}
    for workload in summary["workload"].unique():
        slug = plots._slug(workload)
        images = [
            m.get(f"{kind}-{slug}")
            for m, kind in ((throughput, "throughput"), (latency, "latency"), (cpu, "cpu"))
        ]
        table = render(
            summary[summary["workload"] == workload].sort_values(["middleware", "clients"]),
            STRESS_TABLE,
            markdown=True,
        )
        parts.append(
            f"### {workload}\n\n"
            + _images([i for i in images if i], data.directory, workload)
            + "\n\n"
            + table
        )
    return "\n\n".join(parts)


#: The middlewares without a broker: clients call the service's own process.
DIRECT = {"xmlrpc", "pyro"}
#: What one operation crosses, by middleware: the reason a service's share of its echo
#: differs between direct and brokered middlewares.
PATHS = {
    "xmlrpc": (
        "client and server: 1 round trip",
        "client and front, then front and worker: 2 round trips, both through the front's "
        "one Python process",
    ),
    "pyro": (
        "client and daemon: 1 round trip",
        "client and front, then front and worker: 2 round trips, both through the front's "
        "one Python process",
    ),
    "redis": (
        "client, Redis, service process, Redis, client: 2 round trips through Redis",
        "the same path (task list, worker, reply list), plus the reliable queue's removal",
    ),
    "rabbitmq": (
        "client, broker, service process, broker, client: publish, deliver, publish, deliver",
        "the same path (task queue, worker, reply queue), plus the worker's ack",
    ),
}


def _baseline(data: ResultsData) -> str:
    summary = data.stress_summary
    services = summary[summary["vs_echo_pct"].notna()]
    if services.empty:
        return (
            "## Services against their transport\n\nNo echo baseline in this run; "
            "add `--baseline` to compare each service with its bare transport."
        )
    echo = summary[summary["service"] == "echo"]
    lines = []
    for workload in services["workload"].unique():
        for middleware in _order(services["middleware"]):
            rows = services[
                (services["workload"] == workload) & (services["middleware"] == middleware)
            ].sort_values("clients")
            if rows.empty:
                continue
            first = rows.iloc[0]
            peak = (
                100
                * rows["throughput_ops_s"].max()
                / echo[echo["middleware"] == middleware]["throughput_ops_s"].max()
            )
            shares = ", ".join(f"{r.clients}: {r.vs_echo_pct:.0f}%" for r in rows.itertuples())
            lines.append(
                f"| {workload} | {middleware} | {shares} | {peak:.0f}% | "
                f"{_verdict(first['vs_echo_pct'])} | {_verdict(peak)} |"
            )
    paths = "\n".join(
        f"| {m} | {PATHS[m][0]} | {PATHS[m][1]} |" for m in _order(services["middleware"])
    )
    return (
        "## Services against their transport\n\n"
        "Each service's throughput as a share of the bare echo of the same middleware, with "
        "the same number of clients, and best against best (each one's highest throughput "
        f"over the client counts). Target: at least {BASELINE_TARGET_PCT:.0f}%.\n\n"
        "| workload | middleware | share of echo, by clients | best vs best | "
        f"at {_clients(services['clients'].min())} | best |\n|---|---|---|---|---|---|\n"
        + "\n".join(lines)
        + "\n\nWhat one operation crosses (the echo and the InsultService take the same "
        "path):\n\n| middleware | echo, InsultService | filter, submit-and-wait |\n"
        "|---|---|---|\n" + paths + "\n\n" + _path_explanation(services)
    )


def _verdict(share: float) -> str:
    return "meets" if share >= BASELINE_TARGET_PCT else "MISSES"


def _clients(count: float) -> str:
    return f"{int(count)} client" + ("s" if count != 1 else "")


def _path_explanation(summary: pd.DataFrame) -> str:
    """Why a direct middleware's filter sits further below its echo, if it does here."""
    direct = summary[summary["middleware"].isin(DIRECT)]
    filters = direct[(direct["service"] == "filter") & direct["vs_echo_pct"].notna()]
    if filters.empty or (filters["vs_echo_pct"] >= BASELINE_TARGET_PCT).all():
        return ""
    worst = filters.sort_values("vs_echo_pct").iloc[0]
    echo_best = direct[direct["service"] == "echo"].groupby("middleware")["throughput_ops_s"].max()
    pipelined = direct[(direct["service"] == "filter") & (direct["mode"] == "pipelined")]
    batches = ", ".join(
        f"{m} {100 * rate / echo_best[m]:.0f}%"
        for m, rate in pipelined.groupby("middleware")["throughput_ops_s"].max().items()
        if m in echo_best
    )
    return (
        "On a brokered middleware the echo already takes the work queue's path, so its "
        "filter is compared with like. On a direct middleware the echo is one round trip, "
        "while a filter task, which must reach a separate worker process, takes two, and the "
        "front serves both of them in one Python process: with one client the filter "
        "cannot pass about half of its echo, and with more clients every task still costs "
        "the front two requests where an echo costs one (here as low as "
        f"{worst['vs_echo_pct']:.0f}%, {worst['middleware']} with "
        f"{_clients(worst['clients'])}). That is the price of putting a queue in front of "
        "workers on a middleware without a broker, not of the censoring"
        + (
            f". Once tasks travel in batches (pipelined), the same fronts carry {batches} "
            "of their echo's best rate."
            if batches
            else "."
        )
    )


def _order(names: Any) -> list[str]:
    present = set(names)
    return [m for m in MIDDLEWARES if m in present]


def _bottleneck(row: pd.Series, cores: int) -> str:
    """What the measured CPU says limited one configuration."""
    findings = []
    if row["service_cpu_max_pct"] >= SATURATED_PCT:
        findings.append(
            f"one service process runs at {row['service_cpu_max_pct']:.0f}% of a core: the "
            "service is CPU-bound in a single Python process"
        )
    broker = 0.0 if math.isnan(row["broker_cpu_pct"]) else row["broker_cpu_pct"]
    if broker >= SATURATED_PCT:
        findings.append(f"the broker is saturated ({broker:.0f}% of a core)")
    if row["machine_cpu_pct"] >= 90:
        ours = row["loadgen_cpu_pct"] + row["service_cpu_pct"] + broker
        other = max(0.0, row["machine_cpu_pct"] * cores - ours)
        broker_part = f", the broker {broker:.0f}%" if broker else ""
        findings.append(
            f"the machine is saturated ({row['machine_cpu_pct']:.0f}% of its {cores} cores "
            f"busy: {int(row['clients'])} clients {row['loadgen_cpu_pct']:.0f}%, the service "
            f"{row['service_cpu_pct']:.0f}%{broker_part}, everything else {other:.0f}%, in "
            "% of one core)"
        )
    if not findings:
        findings.append(
            f"no resource is saturated (machine {row['machine_cpu_pct']:.0f}% busy): "
            "the clients spend their time waiting for round trips, so throughput is set "
            "by latency and the number of clients"
        )
    return "; ".join(findings)


def _explanation(summary: pd.DataFrame, cores: int) -> str:
    """A few sentences on why the ranking is what it is, conditioned on the data."""
    sentences = []
    sync = summary[(summary["mode"] == "sync") & (summary["service"] != "echo")]
    if not sync.empty and {"direct", "indirect"} <= {
        "direct" if m in DIRECT else "indirect" for m in sync["middleware"]
    }:
        top = sync[sync["clients"] == sync["clients"].min()]
        best = top.sort_values("throughput_ops_s", ascending=False).iloc[0]["middleware"]
        if best in DIRECT:
            sentences.append(
                "On request/response the direct middlewares lead: a call is one round "
                "trip between client and service, while through a broker each request "
                "makes two hops (client to broker to service, and back), each with its own "
                "system calls, parsing and scheduling."
            )
        else:
            sentences.append(
                "Here a brokered middleware leads even on request/response: its two hops "
                "through the broker cost less than the direct server's per-call overhead "
                "(encoding, HTTP or protocol handling, threads)."
            )
    pipelined = summary[summary["mode"] == "pipelined"]
    gains = []
    for row in pipelined.itertuples():
        same = summary[
            (summary["middleware"] == row.middleware)
            & (summary["service"] == row.service)
            & (summary["mode"] == "sync")
            & (summary["clients"] == row.clients)
        ]
        if not same.empty and same.iloc[0]["throughput_ops_s"]:
            gains.append((row.middleware, row.throughput_ops_s / same.iloc[0]["throughput_ops_s"]))
    if gains:
        best_gain = {m: max(g for mm, g in gains if mm == m) for m, _ in gains}
        listed = ", ".join(f"{m} x{g:.1f}" for m, g in best_gain.items())
        sentences.append(
            "With a window of tasks in flight the filter stops paying one round trip per "
            f"task, and its throughput grows accordingly (best gain over submit-and-wait: "
            f"{listed}): a work queue is limited by the CPU its messages cost, not by "
            "latency."
        )
    if (summary["machine_cpu_pct"] >= 90).any():
        sentences.append(
            f"On this {cores}-core machine, clients, services and brokers compete for the "
            "same cores, so beyond a few clients the figures measure how much CPU each "
            "middleware spends per operation, end to end, rather than what its server "
            "alone could do."
        )
    return " ".join(sentences)


def _ranking(data: ResultsData) -> str:
    summary = data.stress_summary
    cores = int(data.stress["environment"].get("cpu_count") or 1)
    bullets = []
    for workload in summary["workload"].unique():
        rows = summary[summary["workload"] == workload]
        top = rows[rows["clients"] == rows["clients"].max()].sort_values(
            "throughput_ops_s", ascending=False
        )
        ranking = " > ".join(
            f"{r.middleware} ({r.throughput_ops_s:,.0f} ops/s)" for r in top.itertuples()
        )
        bullets.append(f"- **{workload}** at {int(top['clients'].iloc[0])} clients: {ranking}.")
    parts = ["## Ranking and what limits each middleware", "\n".join(bullets)]
    explanation = _explanation(summary, cores)
    if explanation:
        parts.append(explanation)
    for middleware in _order(summary["middleware"]):
        rows = summary[summary["middleware"] == middleware]
        measured = []
        for workload in rows["workload"].unique():
            line = rows[rows["workload"] == workload]
            top = line[line["clients"] == line["clients"].max()].iloc[0]
            measured.append(
                f"- {workload} at {int(top['clients'])} clients: {_bottleneck(top, cores)}."
            )
        parts.append(
            f"### {middleware}\n\n{MECHANISMS.get(middleware, '')}\n\nMeasured here:\n\n"
            + "\n".join(measured)
        )
    return "\n\n".join(parts)


def _trust(data: ResultsData) -> str:
    lines = []
    for name, document in (("stress", data.stress), ("speedup", data.speedup)):
        if not document:
            continue
        for run in document["runs"]:
            row = run["row"]
            if row.get("flags"):
                label = (
                    f"{row['middleware']} {row['service']}/{row['mode']} "
                    f"clients={row['clients']} nodes={row['nodes']} repeat={row['repeat']}"
                )
                samples = "; ".join(run["detail"].get("error_samples", [])[:2])
                lines.append(
                    f"- {name}: {label}: `{row['flags']}`" + (f" ({samples})" if samples else "")
                )
        for failure in document.get("failures", []):
            lines.append(f"- {name}: {failure['run']} FAILED: {failure['error'].splitlines()[0]}")
        if document.get("interrupted"):
            lines.append(f"- {name}: the study was interrupted before it finished.")
    body = "\n".join(lines) if lines else "No run was flagged."
    return (
        "## Runs to treat with care\n\n"
        "A run is flagged when a client process used 90% or more of a core (the load "
        "generator may be the limit), when some operation sent was never confirmed "
        "(errors, timeouts, lost replies), when a client failed, or when its repeats "
        "differ by more than 10%.\n\n" + body
    )
