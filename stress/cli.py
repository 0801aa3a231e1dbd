"""``python -m stress``: single-node throughput and latency of every service and middleware.

Example::

    python -m stress --middleware all --service all --clients 1,2,4,8 \\
        --duration 10 --warmup 2 --repeat 3 --baseline --out results/

Each run deploys one service on one middleware in a namespace of its own, drives it with
N closed-loop client processes (or an open loop at ``--rate``), and records only what the
service confirmed. The study writes ``stress.csv`` and ``stress.json``, redraws the
figures and ``REPORT.md`` from them, and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from middlewares import settings as settings_module
from middlewares.core import DEFAULT_LIMITS
from middlewares.launch.deployment import Deployment
from middlewares.runtime import CommandParser
from middlewares.settings import Settings
from stress.external import external_deployment
from stress.options import (
    add_common_arguments,
    add_external_wait,
    backend_factory,
    check_common,
    check_out,
    guarantees,
    int_list,
    select_middlewares,
)
from stress.plan import RunPlan
from stress.runner import DeployFactory
from stress.workload import MAX_PAYLOAD_WORDS, Workload, format_mix

if TYPE_CHECKING:
    from stress.study import Cell


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m stress``."""
    parser = CommandParser(
        prog="python -m stress",
        description="Measure the throughput and latency of the InsultService and the "
        "InsultFilter on each middleware with N client processes. Every run starts its own "
        "deployment in a fresh namespace (<namespace>-stress-<id>) on free ports, and "
        "deletes the namespace afterwards.",
        epilog="Example: python -m stress --middleware all --service all --clients 1,4 "
        "--duration 3 --warmup 1 --repeat 1 --baseline",
        # --guarantee takes a list and replaces the single-valued settings flag.
        conflict_handler="resolve",
    )
    parser.add_argument(
        "--service",
        choices=("insult", "filter", "echo", "all"),
        default="all",
        help="service to load; all = insult and filter (default: all)",
    )
    parser.add_argument(
        "--clients", type=int_list, help="client processes per run, e.g. 1,2,4,8 (default: 1,2,4,8)"
    )
    parser.add_argument("--min", type=int, help="smallest client count of a sweep")
    parser.add_argument("--max", type=int, help="largest client count of a sweep")
    parser.add_argument(
        "--step",
        default="x2",
        help="sweep step: +N adds N, xN multiplies by N; a bare N adds (default: x2)",
    )
    parser.add_argument(
        "--filter-mode",
        choices=("sync", "pipelined", "both"),
        default="both",
        help="filter workload: submit-and-wait, a window of tasks in flight, or both "
        "(default: both)",
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also drive the bare echo service of each middleware, the transport's limit",
    )
    parser.add_argument(
        "--external-nodes",
        type=int,
        metavar="N",
        help="measure an n-node deployment running elsewhere instead of starting one: "
        "start nothing, and before each run wait until exactly N nodes are live in "
        "--namespace (started with `python -m middlewares serve <mw> <service> --nodes 0` "
        "and `join`, see docs/HOSTS.md); the results record each node's id and host",
    )
    parser.add_argument(
        "--payload-words",
        type=int,
        default=0,
        metavar="N",
        help="words in every filter text and echo payload, and in every added insult up "
        f"to the {DEFAULT_LIMITS.max_insult_chars}-character insult limit, at most "
        f"{MAX_PAYLOAD_WORDS}; recorded in the results (default: 0, the built-in "
        "sentences of about 10 words)",
    )
    add_external_wait(parser)
    add_common_arguments(parser, "stress")
    return parser


def client_counts(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[int]:
    """The client counts of the sweep, from --clients or --min/--max/--step."""
    if args.clients and (args.min or args.max):
        parser.error("give either --clients or --min/--max, not both")
    if args.clients:
        return sorted(set(args.clients))
    if args.min is None and args.max is None:
        return [1, 2, 4, 8]
    low, high = args.min or 1, args.max or args.min
    if low < 1 or high < low:
        parser.error("--min must be at least 1 and --max at least --min")
    step = args.step.strip()
    try:
        size = float(step.lstrip("x+"))
    except ValueError:
        parser.error(f"--step {step!r}: write +N or xN, e.g. +2 or x2")
    multiply = step.startswith("x")
    if size <= (1 if multiply else 0):
        parser.error(f"--step {step!r} would never reach --max")
    counts, value = [], float(low)
    while value <= high:
        counts.append(int(value))
        value = value * size if multiply else value + size
    return sorted(set(counts))


def workloads(args: argparse.Namespace) -> list[Workload]:
    """The workloads the options ask for, in report order."""
    words = args.payload_words
    chosen = []
    if args.service in ("insult", "all"):
        chosen.append(Workload("insult", mix=args.mix, rate=args.rate, payload_words=words))
    if args.service in ("filter", "all"):
        if args.filter_mode in ("sync", "both"):
            chosen.append(Workload("filter", rate=args.rate, payload_words=words))
        if args.filter_mode in ("pipelined", "both"):
            chosen.append(
                Workload("filter", mode="pipelined", window=args.window, rate=args.rate,
                         payload_words=words)
            )  # fmt: skip
    if args.service == "echo" or args.baseline:
        chosen.append(Workload("echo", rate=args.rate, payload_words=words))
    return chosen


def deployment(middleware: str, service: str, args: argparse.Namespace) -> DeployFactory:
    """Starts ``service`` on ``middleware`` through the launcher (one node), or waits
    for the external nodes."""
    if args.external_nodes:
        return external_deployment(
            backend_factory(middleware), service, args.external_nodes, args.external_wait
        )

    def deploy(settings: Settings) -> Deployment:
        return Deployment(middleware, service, settings)

    return deploy


def plan_cells(
    args: argparse.Namespace, settings: Settings, middlewares: list[str], clients: list[int]
) -> list[Cell]:
    """Every run of the study. Repeats are the outer loop, so slow drift of a noisy
    machine shows up as spread between repeats instead of biasing one configuration;
    the guarantees are the inner one, so each pair compared was measured back to back."""
    from stress.study import Cell

    cells = []
    for repeat in range(1, args.repeat + 1):
        for middleware in middlewares:
            for workload in workloads(args):
                for count, guarantee in itertools.product(clients, guarantees(args, settings)):
                    plan = RunPlan(
                        middleware,
                        workload,
                        count,
                        repeat,
                        args.duration,
                        args.warmup,
                        nodes=args.external_nodes or 1,
                        node_form=bool(args.external_nodes),
                    )
                    cells.append(
                        Cell(
                            plan,
                            deployment(middleware, workload.service, args),
                            backend_factory(middleware),
                            settings.with_changes(guarantee=guarantee),
                            external=bool(args.external_nodes),
                        )
                    )
    return cells


def config_of(args: argparse.Namespace, **resolved: Any) -> dict[str, Any]:
    """The study's configuration as recorded in the JSON."""
    config = {
        key: (str(value) if isinstance(value, Path) else value)
        for key, value in vars(args).items()
        if not key.startswith("settings_")
    }
    config["mix"] = format_mix(args.mix)
    return {**config, **resolved}


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m stress``."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    check_common(parser, args)
    if not 0 <= args.payload_words <= MAX_PAYLOAD_WORDS:
        parser.error(f"--payload-words must be between 0 and {MAX_PAYLOAD_WORDS}")
    if args.external_nodes is not None:
        if args.external_nodes < 1:
            parser.error("--external-nodes must be at least 1")
        if args.service == "echo" or args.baseline:
            parser.error("--external-nodes measures the n-node form; echo has none")
    clients = client_counts(parser, args)
    try:
        settings = settings_module.from_args(args)
    except ValueError as error:
        parser.error(str(error))
    # Imported only now, once the command line is checked: the study's modules load
    # pandas and matplotlib, seconds on a busy machine, and a wrong one must fail at once.
    from results.files import default_out
    from stress.study import conclude, run_study

    middlewares = select_middlewares(args.middleware, settings, bool(args.external_nodes))
    out = check_out(parser, args.out or default_out("stress"))
    cells = plan_cells(args, settings, middlewares, clients)
    chosen = guarantees(args, settings)
    print(
        f"stress: {len(cells)} runs of {args.warmup:g}+{args.duration:g} s "
        f"({', '.join(middlewares)}; clients {', '.join(map(str, clients))}; "
        f"{', '.join(chosen)}); "
        f"writing to {out}",
        file=sys.stderr,
    )
    outcome = run_study(
        "stress",
        argv,
        cells,
        out,
        config_of(args, clients=clients, middlewares=middlewares, guarantees=chosen),
        settings,
        calibration_s=args.calibrate,
    )
    conclude("stress", outcome, out, report=not args.no_report)
