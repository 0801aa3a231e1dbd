"""The dynamic-scaling master: ``python -m dynamic.Main``, until Ctrl-C.

Keeps ``N = ceil((B + lambda*T) / C)`` RabbitMQ InsultFilter workers running as local
processes: B is the backlog of ``<ns>.filter.tasks`` (ready + unacknowledged), lambda the
arrival rate measured every poll, C what one worker handles in T (measured at start-up
unless given). Scales up at once, down only after a window of lower recommendations;
stops workers gracefully, so no task is lost or answered twice. Each tick is logged, and
recorded with --csv. Any client may publish the tasks; see docs/DYNAMIC.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dynamic.calibrate import CalibrationFailed
from dynamic.master import describe, run_ticks
from dynamic.record import Tick, TickWriter
from dynamic.runner import MasterOptions, add_master_arguments, local_master, options_from_args
from middlewares import settings as settings_module
from middlewares.rabbitmq.transport import quiet_pika
from middlewares.runtime import (
    EXIT_FAILED,
    CommandParser,
    StopSignal,
    configure_logging,
    run_main,
    writable_directory,
)

log = logging.getLogger("dynamic-master")


def build_parser() -> argparse.ArgumentParser:
    """The master's command line."""
    parser = CommandParser(
        prog="python -m dynamic.Main",
        description=__doc__.split("\n\n")[1].replace("``", ""),
        epilog="Example: python -m dynamic.Main --namespace demo --max 6 --work-ms 50 "
        "--csv results/runs/master.csv",
    )
    add_master_arguments(parser, MasterOptions())
    parser.add_argument(
        "--csv", type=Path, help="also record every tick in this CSV file (default: none)"
    )
    settings_module.add_arguments(parser, leave_out=settings_module.SERVER_ONLY)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the master until SIGINT or SIGTERM; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from_args(args)
        settings = settings_module.from_args(args)
        if args.csv:
            writable_directory(args.csv.parent)
    except ValueError as error:
        parser.error(str(error))
    configure_logging("dynamic-master")
    quiet_pika()
    stop = StopSignal()
    writer = TickWriter(args.csv) if args.csv else None

    def on_tick(tick: Tick) -> None:
        log.info(describe(tick))
        if writer:
            writer.write(tick)

    try:
        with local_master(settings, options) as running:
            log.info("namespace %s; Ctrl-C to stop", settings.namespace)
            run_ticks(running.master, stop, options.poll, on_tick)
            log.info("stopping the workers (each finishes its task first)")
    except (CalibrationFailed, TimeoutError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if writer:
            writer.close()
    return 0


if __name__ == "__main__":
    run_main(main)
