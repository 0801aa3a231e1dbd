"""Drive the master with a scripted load: ``python -m dynamic.TestMaster``.

Starts the master (one worker, calibrated), publishes tasks on a profile of steps, lets
the master scale the workers, and then checks that every task was answered exactly
once. Writes the record (CSV), the figure (PNG) and the run's parameters (JSON, which
``python -m dynamic.simulate --like`` replays) into a new directory under results/runs/
(``--out results`` replaces the shipped example), and deletes its namespace's queues.

The default profile fits this 2-core machine: each task carries a simulated service
time (--work-ms, 50 ms by default) so one worker handles about 19 msg/s and a peak of
200 msg/s needs about 11 workers; see docs/DYNAMIC.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from dynamic.calibrate import CalibrationFailed
from dynamic.load import Producer, ReplyCollector, Tally
from dynamic.master import Stopper, describe, run_ticks
from dynamic.policy import PolicyConfig
from dynamic.record import Tick, TickWriter, measured_startup, write_run_info
from dynamic.runner import (
    MasterOptions,
    add_master_arguments,
    check_broker,
    delete_namespace,
    local_master,
    options_from_args,
)
from dynamic.trace import RateTrace
from middlewares import settings as settings_module
from middlewares.rabbitmq.transport import quiet_pika
from middlewares.runtime import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    CommandParser,
    StopSignal,
    configure_logging,
    run_main,
    writable_directory,
)
from middlewares.settings import Settings

log = logging.getLogger("dynamic-testmaster")

#: msg/s for seconds: a low start, two steps up, a step down, and silence.
DEFAULT_PROFILE = "20:12,100:18,200:15,40:25,0:15"
#: Simulated service time per task: makes one worker slow enough that the worker count
#: moves visibly at rates this machine can carry (see the module docstring).
DEFAULT_WORK_MS = 50.0
DEFAULT_OPTIONS = MasterOptions(max_workers=12)
#: The name of the files a run writes in its --out directory.
RECORD = "dynamic"
#: A load generator behind the profile by more than this (seconds) is worth a line.
LAG_WORTH_REPORTING = 0.1
#: Ticks this long after a step starts are left out of the steady-state lambda.
SETTLE_SECONDS = 2.0


def build_parser() -> argparse.ArgumentParser:
    """TestMaster's command line."""
    parser = CommandParser(
        prog="python -m dynamic.TestMaster",
        description=__doc__.split("\n\n")[1].replace("``", ""),
        epilog="Example: python -m dynamic.TestMaster --profile 20:5,60:5,0:5 --max 4",
    )
    parser.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        help="offered load as RATE:SECONDS steps (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"directory for {RECORD}.csv, {RECORD}.png and {RECORD}.json; --out results "
        f"replaces the shipped example (default: results/runs/{RECORD}-<UTC time>)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the last answers after the profile (default: %(default)s)",
    )
    add_master_arguments(parser, DEFAULT_OPTIONS)
    settings_module.add_arguments(
        parser,
        leave_out=settings_module.SERVER_ONLY,
        defaults={"namespace": "a fresh one, dynamic-<id>", "work_ms": f"{DEFAULT_WORK_MS:g}"},
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = settings_module.from_args(args)
    if args.settings_namespace is None:
        settings = settings.with_changes(namespace=f"dynamic-{uuid.uuid4().hex[:8]}")
    if args.settings_work_ms is None:
        settings = settings.with_changes(work_ms=DEFAULT_WORK_MS)
    return settings


@dataclass(frozen=True)
class StepSummary:
    """One step of the profile, over its ticks once settled.

    Attributes:
        rate: What the profile asked for, msg/s.
        sent: Mean rate the load generator really sent, msg/s (NaN without settled ticks).
        measured: Mean lambda the master measured, msg/s (NaN without settled ticks).
        workers: Workers wanted at the step's last tick.
    """

    rate: float
    sent: float
    measured: float
    workers: int

    @property
    def error(self) -> float:
        """Relative error of the measured lambda against what was sent (NaN if nothing)."""
        return (self.measured - self.sent) / self.sent if self.sent else float("nan")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def summarize_steps(ticks: list[Tick], trace: RateTrace) -> list[StepSummary]:
    """Each step's rates once settled (:data:`SETTLE_SECONDS` after it starts)."""
    summaries = []
    for start, end, rate in trace.intervals():
        inside = [tick for tick in ticks if start < tick.time <= end]
        settled = [tick for tick in inside if tick.time >= start + SETTLE_SECONDS]
        summaries.append(
            StepSummary(
                rate=rate,
                sent=_mean([tick.offered or 0.0 for tick in settled]),
                measured=_mean([tick.arrival_rate for tick in settled]),
                workers=inside[-1].wanted if inside else 0,
            )
        )
    return summaries


def _report(run: ProfileRun, trace: RateTrace) -> None:
    print("profile (msg/s)   sent   lambda   error   workers at end of step")
    for step in summarize_steps(run.ticks, trace):
        error = f"{step.error:+6.1%}" if step.sent else "     -"
        print(
            f"{step.rate:15.1f} {step.sent:6.1f} {step.measured:8.1f}   {error}   {step.workers:7d}"
        )
    if run.most_behind > LAG_WORTH_REPORTING:
        print(
            f"the load generator fell up to {run.most_behind:.1f} s behind the profile "
            "(machine overloaded?); compare lambda with what was sent"
        )
    tally = run.tally
    print(
        f"tasks: {tally.published} published, {tally.answered} answered, "
        f"{tally.lost} lost, {tally.duplicated} duplicated"
        + (f", {tally.unexpected} unexpected answers" if tally.unexpected else "")
    )
    print("every task was processed exactly once" if tally.exactly_once else "EXACTLY-ONCE FAILED")


@dataclass
class ProfileRun:
    """What :func:`run_profile` saw: the ticks, the exactly-once tally and the policy used."""

    ticks: list[Tick]
    tally: Tally
    policy: PolicyConfig
    worker_rate: float
    #: The longest the load generator was ever behind the profile, seconds.
    most_behind: float


class _Finish:
    """Tells the master loop when the run is over: the profile is done and every task
    answered (or the drain timed out), or the load generator failed."""

    def __init__(self, producer: Producer, collector: ReplyCollector, drain: float) -> None:
        self._producer = producer
        self._collector = collector
        self._drain = drain
        self._deadline: float | None = None

    def __call__(self) -> bool:
        if self._producer.error or self._collector.error:
            return True
        if self._producer.is_alive():
            return False
        if self._deadline is None:
            self._deadline = time.monotonic() + self._drain
        answered_all = self._collector.answered() >= self._producer.published
        return answered_all or time.monotonic() > self._deadline


def run_profile(
    settings: Settings,
    options: MasterOptions,
    trace: RateTrace,
    stop: Stopper,
    on_tick: Callable[[Tick], None] = lambda tick: None,
    drain: float = 30.0,
) -> ProfileRun:
    """Start the master, send ``trace`` and count the answers; stops every worker after.

    Raises:
        RuntimeError: when the load generator failed (the message says how).
        CalibrationFailed, TimeoutError: when the first worker could not be measured.
    """
    collector = ReplyCollector(settings)
    producer = Producer(settings, trace, collector.queue, uuid.uuid4().hex[:8])
    ticks: list[Tick] = []

    def record(tick: Tick) -> None:
        ticks.append(tick)
        on_tick(tick)

    try:
        collector.start()
        collector.wait_ready(settings.timeout)
        with local_master(settings, options, offered=producer.sent_rate) as running:
            producer.start()
            finished = _Finish(producer, collector, drain)
            run_ticks(running.master, stop, options.poll, record, until=finished)
            log.info("stopping the workers (each finishes its task first)")
    finally:
        producer.stop()
        collector.stop()
    if producer.error or collector.error:
        raise RuntimeError(f"the load generator failed: {producer.error or collector.error}")
    tally = Tally.of(producer.task_ids(), collector.counts)
    return ProfileRun(ticks, tally, running.policy, running.worker_rate, producer.most_behind)


def main(argv: list[str] | None = None) -> int:
    """Run the scripted load against the master; 0 when every task was answered once."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Imported once the command line is checked: pandas and matplotlib take seconds to
    # load on a busy machine, and a wrong command line must fail at once.
    from dynamic.plot import plot_ticks
    from results.files import default_out

    try:
        trace = RateTrace.parse(args.profile)
        options = options_from_args(args)
        settings = _settings(args)
    except ValueError as error:
        parser.error(str(error))
    quiet_pika()
    check_broker(settings)
    try:
        out = writable_directory(args.out or default_out(RECORD))
    except ValueError as error:
        parser.error(f"--out: {error}")
    configure_logging("dynamic-testmaster")
    stop = StopSignal()
    log.info(
        "namespace %s, profile %s msg/s, %g ms per task",
        settings.namespace,
        trace,
        settings.work_ms,
    )
    csv_path, png_path, json_path = (
        out / f"{RECORD}{suffix}" for suffix in (".csv", ".png", ".json")
    )
    try:
        with TickWriter(csv_path) as writer:

            def on_tick(tick: Tick) -> None:
                log.info(describe(tick))
                writer.write(tick)

            run = run_profile(settings, options, trace, stop, on_tick, args.drain_timeout)
    except (CalibrationFailed, TimeoutError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        delete_namespace(settings)
    policy, tally = run.policy, run.tally
    plot_ticks(
        run.ticks,
        png_path,
        f"RabbitMQ InsultFilter, {settings.work_ms:g} ms per task: T={policy.target_time:g} s, "
        f"C={policy.capacity:.1f} msg/worker/T, workers {policy.min_workers}-{policy.max_workers}, "
        f"window {policy.window:g} s",
    )
    write_run_info(
        json_path,
        {
            "profile": str(trace),
            "worker_rate": run.worker_rate,
            **asdict(policy),
            "poll": options.poll,
            "prefetch": options.prefetch,
            "startup": measured_startup(run.ticks, options.poll),
            "work_ms": settings.work_ms,
            "namespace": settings.namespace,
            **asdict(tally),
        },
    )
    print(
        f"C = {policy.capacity:.1f} messages per worker per T = {policy.target_time:g} s "
        f"({run.worker_rate:.1f} msg/s per worker), profile {trace} msg/s"
    )
    _report(run, trace)
    print(f"wrote {csv_path}, {png_path} and {json_path}")
    if stop.is_set():
        print("interrupted before the end of the profile", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0 if tally.exactly_once else EXIT_FAILED


if __name__ == "__main__":
    run_main(main)
