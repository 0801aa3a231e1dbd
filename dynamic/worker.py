"""The worker the master starts: ``python -m dynamic.worker [--prefetch N] <settings flags>``.

The RabbitMQ InsultFilter worker (middlewares.rabbitmq.filter_worker.FilterWorker,
unchanged: same queue, same answers, same graceful stop on SIGTERM) plus a thread that
publishes its count of acknowledged tasks to <ns>.filter.stats, from which the master
measures the arrival rate (see dynamic/stats.py).

When the filter worker reports by itself, the master can start it directly and this
module goes away.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket

from dynamic.stats import StatsReporter
from middlewares import settings as settings_module
from middlewares.rabbitmq._amqp import Names, quiet_pika
from middlewares.rabbitmq.filter_worker import FilterWorker
from middlewares.runtime import StopSignal, configure_logging, run_main

#: One task at a time: with slow tasks the broker then hands each task to an idle
#: worker, a stopping worker gives back nothing it has not started, and a worker's
#: unacknowledged count is 0 or 1.
DEFAULT_PREFETCH = 1

log = logging.getLogger("dynamic-worker")


def build_parser() -> argparse.ArgumentParser:
    """The worker's command line: every settings flag, plus ``--prefetch``."""
    parser = argparse.ArgumentParser(
        prog="python -m dynamic.worker", description=__doc__.split("\n\n")[1].replace("``", "")
    )
    parser.add_argument(
        "--prefetch",
        type=int,
        default=DEFAULT_PREFETCH,
        help=f"tasks held unacknowledged at once (default: {DEFAULT_PREFETCH})",
    )
    settings_module.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Work and report until SIGINT or SIGTERM, then finish the task in hand and exit."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.prefetch < 1:
        parser.error("--prefetch must be at least 1")
    settings = settings_module.from_args(args)
    configure_logging("dynamic-worker")
    quiet_pika()
    stop = StopSignal()
    worker = FilterWorker(settings, args.prefetch)
    reporter = StatsReporter(
        settings, f"{socket.gethostname()}:{os.getpid()}", lambda: worker.processed
    )
    reporter.start()
    log.info("consuming %s with prefetch %d", Names(settings.namespace).filter_tasks, args.prefetch)
    try:
        worker.run(stop)
    finally:
        worker.close()
        reporter.finish()
    log.info("stopped after %d tasks", worker.processed)
    return 0


if __name__ == "__main__":
    run_main(main)
