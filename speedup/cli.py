"""``python -m speedup``: how throughput grows with 1, 2, 3 nodes, S(N) = X(N) / X(1).

Example::

    python -m speedup --middleware all --service filter --nodes 1,2,3 --repeat 3 \\
        --duration 10 --work-ms 0,5 --work-kind sleep

Every N is measured with the same offered load (the same client processes and tasks in
flight), through the same measurement code as ``python -m stress``. Runs of one repeat
are interleaved over N, and S(N) pairs each N with the 1-node run of the same repeat.
``--work-ms`` adds a simulated service time per request so that node capacity, not the
shared 2-core machine, is what the nodes add.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from middlewares import settings as settings_module
from middlewares.launch.deployment import Deployment
from middlewares.settings import Settings
from results.tables import add_speedup, summarise_speedup
from stress.cli import config_of
from stress.options import (
    add_common_arguments,
    backend_factory,
    check_common,
    float_list,
    int_list,
    select_middlewares,
)
from stress.runner import DeployFactory, RunPlan
from stress.study import Cell, conclude, default_out, run_study
from stress.workload import Workload

#: Client processes per run when --clients is not given. The filter is pipelined, so 4
#: clients keep 4 x window tasks in flight; the InsultService is request/response, so it
#: needs more clients to keep 3 nodes busy.
DEFAULT_CLIENTS = {"filter": 4, "insult": 8}


def start_nodes(middleware: str, service: str, settings: Settings, nodes: int) -> Deployment:
    """The one place that knows how an N-node deployment is started: the n-node form."""
    return Deployment(middleware, service, settings, nodes=nodes)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m speedup``."""
    parser = argparse.ArgumentParser(
        prog="python -m speedup",
        description="Measure the speedup S(N) = X(N) / X(1) of each service on 1..N nodes "
        "under the same offered load. Every run starts its own deployment in a fresh "
        "namespace on free ports, and deletes the namespace afterwards.",
        epilog="Example: python -m speedup --middleware all --service filter --nodes 1,2,3 "
        "--duration 3 --repeat 1 --work-ms 5",
        # --work-ms below takes a list and replaces the single-valued settings flag.
        conflict_handler="resolve",
    )
    parser.add_argument(
        "--service",
        choices=("insult", "filter", "all"),
        default="all",
        help="service to scale (default: all)",
    )
    parser.add_argument(
        "--nodes", type=int_list, default=[1, 2, 3], help="node counts, must include 1"
    )
    parser.add_argument(
        "--clients",
        type=int,
        help="client processes at every N (default: 4 for the filter, 8 for the insult service)",
    )
    parser.add_argument(
        "--filter-mode",
        choices=("sync", "pipelined"),
        default="pipelined",
        help="filter workload (default: pipelined, how a work queue is used)",
    )
    add_common_arguments(parser, "speedup")
    parser.add_argument(
        "--work-ms",
        type=float_list,
        default=[0.0, 5.0],
        help="simulated service time per request in ms, one study per value (default: 0,5)",
    )
    return parser


def workload_for(service: str, args: argparse.Namespace) -> Workload:
    """The workload that loads ``service`` in this study."""
    if service == "filter" and args.filter_mode == "pipelined":
        return Workload("filter", mode="pipelined", window=args.window, rate=args.rate)
    return Workload(service, mix=args.mix, rate=args.rate)


def services(args: argparse.Namespace) -> list[str]:
    """The services to scale."""
    return ["insult", "filter"] if args.service == "all" else [args.service]


def deployment(middleware: str, service: str, nodes: int) -> DeployFactory:
    """Starts ``service`` on ``middleware`` with ``nodes`` nodes."""

    def deploy(settings: Settings) -> Deployment:
        return start_nodes(middleware, service, settings, nodes)

    return deploy


def plan_cells(
    args: argparse.Namespace, settings: Settings, middlewares: list[str], chosen: list[str]
) -> list[Cell]:
    """Every run: repeats outermost, N innermost, so each repeat's S(N) compares runs
    taken moments apart."""
    cells = []
    for repeat in range(1, args.repeat + 1):
        for middleware in middlewares:
            for service in chosen:
                workload = workload_for(service, args)
                clients = args.clients or DEFAULT_CLIENTS[service]
                for work_ms in args.work_ms:
                    for nodes in args.nodes:
                        plan = RunPlan(
                            middleware,
                            workload,
                            clients,
                            repeat,
                            args.duration,
                            args.warmup,
                            nodes=nodes,
                        )
                        cells.append(
                            Cell(
                                plan,
                                deployment(middleware, service, nodes),
                                backend_factory(middleware),
                                settings.with_changes(work_ms=work_ms),
                                extra={"node_form": "nodes"},
                            )
                        )
    return cells


def offered_load(args: argparse.Namespace, chosen: list[str]) -> str:
    """The load every N gets, in words, for the report."""
    parts = []
    for service in chosen:
        workload = workload_for(service, args)
        clients = args.clients or DEFAULT_CLIENTS[service]
        each = (
            f"{workload.window} tasks in flight each"
            if workload.mode == "pipelined"
            else "one request in flight each"
        )
        rate = f", open loop at {workload.rate:g} ops/s" if workload.rate else ""
        parts.append(f"{service}: {clients} client processes, {each}{rate}")
    return "; ".join(parts)


def finalize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Add the ``speedup`` column and the per-point summary for the JSON."""
    add_speedup(rows)
    return {"speedup_summary": summarise_speedup(rows).to_dict("records")}


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m speedup``."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    check_common(parser, args)
    if 1 not in args.nodes:
        parser.error("--nodes must include 1: S(N) is measured against one node")
    args.nodes = sorted(set(args.nodes))
    try:
        settings = settings_module.from_args(args)
    except ValueError as error:
        parser.error(str(error))
    chosen = services(args)
    middlewares = select_middlewares(args.middleware, settings)
    out = args.out or default_out("speedup")
    cells = plan_cells(args, settings, middlewares, chosen)
    print(
        f"speedup: {len(cells)} runs of {args.warmup:g}+{args.duration:g} s "
        f"({', '.join(middlewares)}; nodes {', '.join(map(str, args.nodes))}; "
        f"work {', '.join(f'{w:g}' for w in args.work_ms)} ms); writing to {out}",
        file=sys.stderr,
    )
    config = config_of(
        args,
        middlewares=middlewares,
        services=chosen,
        offered_load=offered_load(args, chosen),
        work_kind=settings.work_kind,
    )
    outcome = run_study(
        "speedup",
        argv,
        cells,
        out,
        config,
        settings,
        calibration_s=args.calibrate,
        finalize=finalize,
    )
    conclude("speedup", outcome, out, report=not args.no_report)
