"""Command-line options shared by ``python -m stress`` and ``python -m speedup``."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from middlewares import settings as settings_module
from middlewares.contract import Backend, BrokerUnavailable
from middlewares.launch.deployment import check_node_form
from middlewares.registry import MIDDLEWARES, get_backend
from middlewares.runtime import usage_error, writable_directory
from middlewares.settings import GUARANTEES, Settings
from stress.external import DEFAULT_WAIT
from stress.workload import DEFAULT_MIX, format_mix, parse_mix


def _number_list(
    text: str, kind: Callable[[str], Any], least: int, noun: str, example: str
) -> list[Any]:
    """Parse a comma-separated list of ``kind`` values, each at least ``least``."""
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of {noun}"
        ) from None
    if not values or min(values) < least:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give {noun} of at least {least}, e.g. {example}"
        )
    return values


def int_list(text: str) -> list[int]:
    """Parse ``1,2,4,8`` into positive integers, for argparse."""
    return _number_list(text, int, 1, "integers", "1,2,4")


def float_list(text: str) -> list[float]:
    """Parse ``0,5`` into non-negative numbers, for argparse."""
    return _number_list(text, float, 0, "numbers", "0,5")


def positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type accepting only values above zero."""

    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
        return value

    return parse


def mix(text: str) -> tuple[tuple[str, float], ...]:
    """argparse wrapper of :func:`stress.workload.parse_mix`."""
    try:
        return parse_mix(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_common_arguments(parser: argparse.ArgumentParser, study: str) -> None:
    """Options every study has: which middlewares, how long, how often, where to write."""
    parser.add_argument(
        "--middleware",
        default="all",
        help=f"{', '.join(MIDDLEWARES)}, a comma-separated list of them, or all (default)",
    )
    parser.add_argument(
        "--duration",
        type=positive(float),
        default=10.0,
        help="seconds measured per run (default: %(default)g)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds of load before each measurement, not counted (default: 2)",
    )
    parser.add_argument(
        "--repeat", type=positive(int), default=3, help="repetitions of every run (default: 3)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"directory for {study}.csv, {study}.json, figures and REPORT.md "
        f"(default: results/runs/{study}-<UTC time>)",
    )
    parser.add_argument(
        "--window",
        type=positive(int),
        default=16,
        help="filter tasks in flight per client in pipelined mode (default: %(default)s)",
    )
    parser.add_argument(
        "--mix",
        type=mix,
        default=DEFAULT_MIX,
        help=f"InsultService operation weights (default: {format_mix(DEFAULT_MIX)})",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="open loop: offered operations per second over all clients, latency counted "
        "from each request's intended send time (default: 0 = closed loop)",
    )
    parser.add_argument(
        "--calibrate",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="first measure how fast one client process drives an instant fake service, "
        "for this many seconds per workload; 0 skips it (default: 1)",
    )
    parser.add_argument(
        "--no-report", action="store_true", help="write the CSV and JSON only, no figures"
    )
    settings_module.add_arguments(parser, note=STUDY_SETTINGS_NOTE)
    # Replaces the single-valued settings flag (the parser resolves the conflict).
    parser.add_argument(
        "--guarantee",
        dest="guarantees",
        type=guarantee_list,
        metavar="GUARANTEE",
        help="delivery guarantee of the deployments measured: at-least-once (acks, "
        "confirms, leases, reliable queues), at-most-once (none of them), a "
        "comma-separated list, or both (each configuration is run under each, back to "
        "back); recorded in every row (default: INSULTBENCH_GUARANTEE or at-least-once)",
    )


def guarantee_list(text: str) -> list[str]:
    """Parse ``at-most-once``, ``at-least-once,at-most-once`` or ``both``, for argparse."""
    names = list(GUARANTEES) if text.strip() == "both" else [p.strip() for p in text.split(",")]
    unknown = [name for name in names if name not in GUARANTEES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give {', '.join(GUARANTEES)}, a comma-separated list of them, or both"
        )
    return list(dict.fromkeys(names))


def guarantees(args: argparse.Namespace, settings: Settings) -> list[str]:
    """The guarantees a study runs under: ``--guarantee``, or the settings' one."""
    return args.guarantees or [settings.guarantee]


#: What the settings flags mean in a study, where each run normally makes its own.
STUDY_SETTINGS_NOTE = (
    "each run deploys in a fresh namespace <namespace>-<study>-<id> on free ports, so "
    "--namespace is only a prefix and the ports, hosts and Pyro4 name server port apply "
    "only with --external-nodes; also read from INSULTBENCH_<NAME>, REDIS_URL and AMQP_URL"
)


def add_external_wait(parser: argparse.ArgumentParser) -> None:
    """``--external-wait``: how long a study waits for nodes started elsewhere."""
    parser.add_argument(
        "--external-wait",
        type=positive(float),
        default=DEFAULT_WAIT,
        metavar="SECONDS",
        help="with --external-nodes: how long to wait before each run for the wanted number "
        "of live nodes (default: %(default)g)",
    )


def check_common(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject option values no study can run with."""
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    if args.rate < 0:
        parser.error("--rate must not be negative")


def select_middlewares(choice: str, settings: Settings, node_form: bool = False) -> list[str]:
    """The middlewares to measure (``node_form``: in their n-node form, which needs
    Redis as well). With ``all``, ones that are not installed or whose broker is
    unreachable are skipped with a message; a named one must work. Exits with status 2
    and one line when nothing can run."""
    names = list(MIDDLEWARES) if choice == "all" else [n.strip() for n in choice.split(",")]
    unknown = [n for n in names if n not in MIDDLEWARES]
    if unknown:
        usage_error(
            f"unknown middleware {', '.join(unknown)}; choose from "
            f"{', '.join(MIDDLEWARES)} or all"
        )
    usable = []
    reasons = []
    for name in names:
        try:
            backend = get_backend(name)
            check_node_form(backend, settings) if node_form else backend.check(settings)
        except (ImportError, AttributeError) as error:
            reason = f"{name} is not available in this checkout ({error})"
        except BrokerUnavailable as error:
            reason = str(error)
        else:
            usable.append(name)
            continue
        if choice != "all":
            usage_error(reason)
        reasons.append((name, reason))
    if not usable:
        # One cause (Redis down) often fails them all: say it once, not four times.
        causes = "; ".join(dict.fromkeys(reason for _, reason in reasons))
        usage_error(f"no middleware can run: {causes}")
    for name, reason in reasons:
        print(f"warning: skipping {name}: {reason}", file=sys.stderr)
    return usable


def check_out(parser: argparse.ArgumentParser, out: Path) -> Path:
    """``out``, created and proven writable now, before anything is measured."""
    try:
        return writable_directory(out)
    except ValueError as error:
        parser.error(f"--out: {error}")


def backend_factory(middleware: str) -> Callable[[], Backend]:
    """A picklable function returning the backend, for the client processes."""
    return functools.partial(get_backend, middleware)
