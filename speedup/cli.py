"""``python -m speedup``: how throughput grows with 1, 2, 3 nodes, S(N) = X(N) / X(1).

Example::

    python -m speedup --middleware all --service all --nodes 1,2,3 --node-cpu 0.25 \\
        --duration 5 --repeat 3

Every node is a machine of fixed capacity: its process is held to ``--node-cpu`` of one
core (by a cgroup, or by throttling itself), so N nodes add N times that capacity on any
host, and what else limits the deployment (a front, a master, a broker) shows up. By
default the cap is chosen so that all nodes together use at most 40% of the machine.

Every N is measured with the same offered load (the same client processes and tasks in
flight), through the same measurement code as ``python -m stress``. Runs of one repeat
are interleaved over N, and S(N) pairs each N with the 1-node run of the same repeat.
``--tasks M`` measures fixed work instead: M operations as fast as the deployment
allows, S = T(1) / T(N). ``--work-ms`` adds a simulated service time per request, a
secondary variant (sleeping costs no CPU, so it scales on any machine).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from typing import TYPE_CHECKING, Any

import psutil

from middlewares import settings as settings_module
from middlewares.launch import cpu_cap
from middlewares.launch.cpu_cap import CpuCapError, CpuCaps
from middlewares.launch.deployment import Deployment
from middlewares.runtime import CommandParser
from middlewares.settings import Settings
from speedup.fixed_work import AUTO, FALLBACK_TASKS, AutoTasks, tasks_list
from stress.cli import config_of
from stress.external import external_deployment
from stress.options import (
    add_common_arguments,
    add_external_wait,
    backend_factory,
    check_common,
    check_out,
    float_list,
    guarantees,
    int_list,
    select_middlewares,
)
from stress.plan import RunPlan
from stress.runner import DeployFactory
from stress.workload import Workload

if TYPE_CHECKING:
    from stress.study import Cell

#: Client processes per run when --clients is not given. The filter is pipelined, so 4
#: clients keep 4 x window tasks in flight; the InsultService is request/response, so it
#: needs more clients to keep 3 nodes busy.
DEFAULT_CLIENTS = {"filter": 4, "insult": 8}
#: Filter tasks in flight per client when --window is not given.
DEFAULT_WINDOW = 64


def start_nodes(
    middleware: str, service: str, settings: Settings, nodes: int, caps: CpuCaps | None = None
) -> Deployment:
    """The one place that knows how an N-node deployment is started: the n-node form,
    each node held to ``caps``."""
    return Deployment(middleware, service, settings, nodes=nodes, caps=caps)


def node_cpu_option(text: str) -> float | str:
    """argparse type of ``--node-cpu``: ``auto``, 0 (uncapped) or a fraction of a core."""
    return "auto" if text.strip() == "auto" else cpu_cap.fraction_or_zero(text)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m speedup``."""
    parser = CommandParser(
        prog="python -m speedup",
        description="Measure the speedup S(N) = X(N) / X(1) of each service on 1..N nodes "
        "under the same offered load. Every run starts its own deployment in a fresh "
        "namespace on free ports, and deletes the namespace afterwards.",
        epilog="Example: python -m speedup --middleware all --service all --nodes 1,2,3 "
        "--node-cpu 0.25 --duration 5 --repeat 3",
        # --work-ms below and --guarantee take a list and replace the single-valued
        # settings flags.
        conflict_handler="resolve",
    )
    parser.add_argument(
        "--service",
        choices=("insult", "filter", "all"),
        default="all",
        help="service to scale (default: all)",
    )
    parser.add_argument(
        "--nodes",
        type=int_list,
        default=[1, 2, 3],
        help="node counts, must include 1 (default: 1,2,3)",
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
    parser.add_argument(
        "--external-nodes",
        action="store_true",
        help="measure nodes started elsewhere instead of starting them: start nothing, "
        "and before each run wait until exactly N nodes (each of --nodes, in increasing "
        "order) are live in --namespace, started with `python -m middlewares serve <mw> "
        "<service> --nodes 0` and `join` (docs/HOSTS.md); --node-cpu does not apply, each "
        "node has its machine's capacity; the results record each node's id and host",
    )
    add_external_wait(parser)
    add_common_arguments(parser, "speedup")
    cpu_cap.add_arguments(
        parser,
        node_cpu_option,
        "auto: all nodes together at most 40%% of the machine's cores; 0: uncapped",
    )
    # Enough tasks in flight that at N = 3 every node still finds a full batch (16) in
    # the queue, so a node's cost per task does not grow with N for want of work.
    parser.set_defaults(node_cpu="auto", window=DEFAULT_WINDOW)
    parser.add_argument(
        "--tasks",
        type=tasks_list,
        default=[0],
        help="fixed work: M filter tasks or InsultService requests as fast as the deployment "
        "allows, timed from the first submit to the last confirmed result, S = T(1) / T(N); "
        "auto: M = what one node completed in the timed window (so T(1) is about "
        "--duration); 0 is the duration-based mode; 0,auto runs both (default: 0)",
    )
    parser.add_argument(
        "--work-ms",
        type=float_list,
        default=[0.0],
        help="simulated service time per request in ms, one study per value; a secondary "
        "variant, since sleeping costs a node no CPU (default: 0)",
    )
    return parser


def workload_for(service: str, args: argparse.Namespace, tasks: int = 0) -> Workload:
    """The workload that loads ``service`` in this study (``tasks``: fixed work)."""
    if service == "filter" and args.filter_mode == "pipelined":
        return Workload(
            "filter", mode="pipelined", window=args.window, rate=args.rate, tasks=tasks
        )
    return Workload(service, mix=args.mix, rate=args.rate, tasks=tasks)


def services(args: argparse.Namespace) -> list[str]:
    """The services to scale."""
    return ["insult", "filter"] if args.service == "all" else [args.service]


def deployment(
    middleware: str, service: str, nodes: int, caps: CpuCaps, args: argparse.Namespace
) -> DeployFactory:
    """Starts ``service`` on ``middleware`` with ``nodes`` nodes held to ``caps``, or
    waits for ``nodes`` external ones."""
    if args.external_nodes:
        return external_deployment(
            backend_factory(middleware), service, nodes, args.external_wait
        )

    def deploy(settings: Settings) -> Deployment:
        return start_nodes(middleware, service, settings, nodes, caps)

    return deploy


def resolve_caps(args: argparse.Namespace) -> tuple[CpuCaps, str]:
    """The caps of every run, with ``auto`` resolved, and a line saying what they are.

    The method is resolved here, once, so every run uses (and records) the same one."""
    if args.external_nodes:
        return CpuCaps(), "node capacity: each external node's own machine (not capped)"
    cores = psutil.cpu_count() or 1
    node = args.node_cpu
    chosen = ""
    if node == "auto":
        node = cpu_cap.default_node_fraction(max(args.nodes), cores)
        chosen = (
            f" (auto: {max(args.nodes)} nodes x {node:g} <= "
            f"{cpu_cap.NODES_SHARE_OF_MACHINE:.0%} of {cores} cores)"
        )
    if not (node or args.coordinator_cpu):
        return CpuCaps(), "node capacity: uncapped (nodes share the machine's cores)"
    choice = cpu_cap.choose_method(args.cap_method)
    if choice.notice:
        print(choice.notice, file=sys.stderr)
    where = f" ({choice.where})" if choice.where else ""
    coordinators = f", coordinators {args.coordinator_cpu:g}" if args.coordinator_cpu else ""
    return CpuCaps(node, args.coordinator_cpu, choice.method), (
        f"node capacity: {node:g} of one core per node{chosen}{coordinators}; "
        f"held by {choice.method}{where}"
    )


def plan_cells(
    args: argparse.Namespace,
    settings: Settings,
    middlewares: list[str],
    chosen: list[str],
    caps: CpuCaps,
) -> list[Cell]:
    """Every run: repeats outermost, N innermost, so each repeat's S(N) compares runs
    taken moments apart."""
    from stress.study import Cell

    cells = []
    method = caps.method if caps.any else "none"
    auto_tasks = AutoTasks()
    for repeat in range(1, args.repeat + 1):
        for middleware in middlewares:
            for service in chosen:
                clients = args.clients or DEFAULT_CLIENTS[service]
                extra = {
                    "node_form": "nodes",
                    "node_cpu": caps.node,
                    "coordinator_cpu": caps.coordinator,
                    "cap_method": method,
                }
                for work_ms, tasks in curves(args):
                    auto = tasks == AUTO
                    workload = workload_for(service, args, FALLBACK_TASKS if auto else int(tasks))
                    for guarantee, nodes in itertools.product(
                        guarantees(args, settings), args.nodes
                    ):
                        plan = RunPlan(
                            middleware,
                            workload,
                            clients,
                            repeat,
                            args.duration,
                            args.warmup,
                            nodes,
                            node_form=True,
                        )
                        cells.append(
                            Cell(
                                plan,
                                deployment(middleware, service, nodes, caps, args),
                                backend_factory(middleware),
                                settings.with_changes(work_ms=work_ms, guarantee=guarantee),
                                extra=extra,
                                resolve=auto_tasks if auto else None,
                                external=args.external_nodes,
                            )
                        )
    if args.external_nodes:
        # Nodes are added by hand between runs: every run of one N, then the next N.
        cells.sort(key=lambda cell: cell.plan.nodes)
    return cells


def curves(args: argparse.Namespace) -> list[tuple[float, int | str]]:
    """(simulated work in ms, fixed work) of every curve of one service: each
    ``--work-ms`` timed (when ``--tasks`` has 0), then each fixed work without simulated
    work. With simulated work a node's capacity is 1 / work by construction, which the
    timed runs already show; and ``auto`` needs the timed runs first."""
    timed = [(work_ms, 0) for work_ms in args.work_ms] if 0 in args.tasks else []
    return timed + [(0.0, tasks) for tasks in args.tasks if tasks != 0]


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
    """Add the ``speedup`` and bottleneck columns and the per-point summary for the JSON."""
    from results.bottleneck import add_bottlenecks
    from results.tables import add_speedup, summarise_speedup

    add_speedup(rows)
    add_bottlenecks(rows)
    return {"speedup_summary": summarise_speedup(rows).to_dict("records")}


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m speedup``."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    # Imported here, not at the top: the study's modules load pandas and matplotlib,
    # seconds on a busy machine, and a wrong command line must fail at once.
    from results.files import default_out
    from stress.study import conclude, run_study


    args = parser.parse_args(argv)
    check_common(parser, args)
    if 1 not in args.nodes:
        parser.error("--nodes must include 1: S(N) is measured against one node")
    args.nodes = sorted(set(args.nodes))
    try:
        settings = settings_module.from_args(args)
    except ValueError as error:
        parser.error(str(error))
    if any(args.tasks) and args.rate:
        parser.error("--tasks is sent as fast as possible; it cannot go with --rate")
    if any(args.tasks) and 0.0 not in args.work_ms:
        parser.error("--tasks measures fixed work without simulated work: add 0 to --work-ms")
    chosen = services(args)
    middlewares = select_middlewares(args.middleware, settings, node_form=True)
    out = check_out(parser, args.out or default_out("speedup"))
    try:
        caps, capacity = resolve_caps(args)
    except CpuCapError as error:
        parser.error(str(error))
    cells = plan_cells(args, settings, middlewares, chosen, caps)
    print(capacity)
    print(
        f"speedup: {len(cells)} runs of {args.warmup:g}+{args.duration:g} s "
        f"({', '.join(middlewares)}; nodes {', '.join(map(str, args.nodes))}; "
        f"work {', '.join(f'{w:g}' for w in args.work_ms)} ms; "
        f"{', '.join(guarantees(args, settings))}); "
        f"writing to {out}",
        file=sys.stderr,
    )
    config = config_of(
        args,
        middlewares=middlewares,
        services=chosen,
        offered_load=offered_load(args, chosen),
        work_kind=settings.work_kind,
        guarantees=guarantees(args, settings),
        node_cpu=caps.node,
        coordinator_cpu=caps.coordinator,
        cap_method=caps.method if caps.any else "none",
        node_capacity=capacity,
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
