"""The stress study's part of ``REPORT.md``: throughput and latency against concurrent
clients, each service against its middleware's bare echo, what limits each point and a
ranking of the middlewares.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from middlewares.registry import MIDDLEWARES
from results import plots
from results.axes import FigureList
from results.data import ResultsData
from results.limits import SATURATED
from results.profiles import profile
from results.speedup_report import everything_else_pct
from results.tables import STRESS_BRIEF, render

#: Targets of the issue, checked on every report.
BASELINE_TARGET_PCT = 70.0

#: A process this busy is saturated: it is what limits the run.
SATURATED_PCT = 100 * SATURATED


def stress_section(data: ResultsData, figures: FigureList) -> str:
    """Per workload: numbered figures of throughput, latency and CPU, and the short
    table (the full one is in the appendix)."""
    summary = data.stress_summary
    drawn = figures.directory / "figures"
    parts = ["## Single-node throughput and latency"]
    throughput = {p.stem: p for p in plots.throughput_vs_clients(summary, drawn)}
    latency = {p.stem: p for p in plots.latency_percentiles(summary, drawn)}
    cpu = {p.stem: p for p in plots.cpu_breakdown(summary, drawn)}
    for workload in summary["workload"].unique():
        slug = plots._slug(workload)
        rows = summary[summary["workload"] == workload]
        top = int(rows["clients"].max())
        captions = (
            (throughput, "throughput", f"{workload}: confirmed operations per second "
             "against client processes, one line per middleware; dashed, the same "
             "middleware's bare echo. Look at the gap between each line and its own echo: "
             "it is what the service adds to the transport." + _bars_note(rows)),
            (latency, "latency", f"{workload}: latency percentiles per middleware, in ms "
             "on a log scale. Look at how far p99 and p99.9 rise above p50 as clients "
             "are added: that is waiting in queues, not work."),
            (cpu, "cpu", f"{workload}: where the CPU went at {top} clients, in cores. A "
             "stack that reaches the dashed line used the whole machine: the machine, "
             "not the middleware, then set the throughput."),
        )  # fmt: skip
        images = [
            figures.add(paths[f"{kind}-{slug}"], caption)
            for paths, kind, caption in captions
            if f"{kind}-{slug}" in paths
        ]
        table = render(rows.sort_values(["middleware", "clients"]), _brief(rows), markdown=True)
        parts.append(f"### {workload}\n\n" + "\n\n".join([*images, table]))
    return "\n\n".join(parts)


def _bars_note(rows: pd.DataFrame) -> str:
    if rows["repeats"].max() > 1:
        return f" Error bars: one standard deviation over {rows['repeats'].max()} repeats."
    return " One repeat: no error bars, and differences under 10% may be noise."


def _brief(rows: pd.DataFrame) -> list[tuple[str, str, int]]:
    """The short table's columns, with errors and flags only when some row has them."""
    spec = list(STRESS_BRIEF)
    if rows["errors"].sum():
        spec.append(("errors", "errors", 0))
    if rows["flags"].astype(bool).any():
        spec.append(("flags", "flags", 0))
    return spec


def baseline_section(data: ResultsData) -> str:
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
        f"| {m} | {profile(m).insult_path} | {profile(m).filter_path} |"
        for m in _order(services["middleware"])
    )
    return (
        "## Services against their transport\n\n"
        "Each service's throughput as a share of the bare echo of the same middleware, with "
        "the same number of clients, and best against best (each one's highest throughput "
        f"over the client counts). Target: at least {BASELINE_TARGET_PCT:.0f}%.\n\n"
        "| workload | middleware | share of echo, by clients | best vs best | "
        f"at {_clients(services['clients'].min())} | best |\n|---|---|---|---|---|---|\n"
        + "\n".join(lines)
        + _above_echo(services, summary)
        + "\n\nWhat one operation crosses (the echo and the InsultService take the same "
        "path):\n\n| middleware | echo, InsultService | filter, submit-and-wait |\n"
        "|---|---|---|\n" + paths + "\n\n" + _path_explanation(services)
    )


def _above_echo(services: pd.DataFrame, summary: pd.DataFrame) -> str:
    """Why a service may beat its own echo, for every row that does, with the other
    work the machine did during each of the two runs."""
    above = services[(services["vs_echo_pct"] > 100) & (services["mode"] == "sync")]
    if above.empty:
        return ""
    cores = int(summary.attrs.get("cpu_count") or 1)
    cases = []
    for _, row in above.iterrows():
        echo = summary[
            (summary["service"] == "echo")
            & (summary["middleware"] == row["middleware"])
            & (summary["clients"] == row["clients"])
        ].iloc[0]
        spread = (
            f", repeats' spread {max(row['spread_pct'], echo['spread_pct']):.0f}%"
            if row["repeats"] > 1
            else ""
        )
        cases.append(
            f"{row['middleware']} {row['workload']} at {_clients(row['clients'])}: "
            f"{row['vs_echo_pct']:.0f}% (other work on the machine: "
            f"{everything_else_pct(echo, cores):.0f}% of a core during the echo run, "
            f"{everything_else_pct(row, cores):.0f}% during this one{spread})"
        )
    single = (
        " With one repeat there is no spread to judge it by." if above["repeats"].max() == 1 else ""
    )
    return (
        "\n\nAbove 100%: " + "; ".join(cases) + ". A service cannot outrun its own "
        "transport, so a share above 100% means the two runs, taken apart in time on a "
        "shared machine, did not get the same share of its cores (compare the other work "
        "in each), or, for the InsultService, that its operations were a little cheaper "
        "than the echo's 64-byte round trip (`random_insult` sends no argument and gets a "
        'short reply). Read it as "as fast as the transport".' + single
    )


def _verdict(share: float) -> str:
    return "meets" if share >= BASELINE_TARGET_PCT else "MISSES"


def _clients(count: float) -> str:
    return f"{int(count)} client" + ("s" if count != 1 else "")


def _path_explanation(summary: pd.DataFrame) -> str:
    """Why a direct middleware's filter sits further below its echo, if it does here."""
    direct = summary[summary["middleware"].map(lambda m: profile(m).direct)]
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
        "direct" if profile(m).direct else "indirect" for m in sync["middleware"]
    }:
        top = sync[sync["clients"] == sync["clients"].min()]
        best = top.sort_values("throughput_ops_s", ascending=False).iloc[0]["middleware"]
        if profile(best).direct:
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


def ranking_section(data: ResultsData) -> str:
    """``## Ranking``: the middlewares in order per workload, and why."""
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
    parts.append(
        "How each middleware carries a call, and what the measured CPU says limited each "
        "of its workloads, is in the appendix (*How each middleware works*)."
    )
    return "\n\n".join(parts)


def middleware_details(data: ResultsData) -> str:
    """The appendix's ``## How each middleware works``: per middleware, how a call
    travels and, per workload at its largest client count, what limited it."""
    summary = data.stress_summary
    cores = int(data.stress["environment"].get("cpu_count") or 1)
    parts = ["## How each middleware works, and what limited it"]
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
            f"### {middleware}\n\n{profile(middleware).mechanism}\n\nMeasured here:\n\n"
            + "\n".join(measured)
        )
    return "\n\n".join(parts)
