"""The master on this machine: RabbitMQ, local worker processes, calibration.

Shared by ``python -m dynamic.Main``, ``python -m dynamic.TestMaster`` and the tests, so
all three start, calibrate and stop the master the same way.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dynamic.broker import RabbitObserver
from dynamic.calibrate import measure_worker_rate
from dynamic.launcher import DEFAULT_PREFETCH, LocalProcessLauncher
from dynamic.master import Master, OfferedRate
from dynamic.policy import PolicyConfig, ScalingPolicy
from middlewares.rabbitmq.backend import BACKEND as RABBITMQ
from middlewares.rabbitmq.transport import (
    Names,
    close_quietly,
    connect,
    declare_task_queue,
    link_errors_as_unavailable,
)
from middlewares.settings import Settings

log = logging.getLogger("dynamic.runner")


@dataclass(frozen=True)
class MasterOptions:
    """How the master runs; see ``python -m dynamic.Main --help`` for each one.

    Attributes:
        target_time: ``T``, seconds.
        capacity: ``C``, messages per worker per ``T``; None to calibrate at start-up.
        min_workers: Fewest workers.
        max_workers: Most workers.
        window: Seconds of lower recommendations before scaling down.
        poll: Seconds between two ticks.
        prefetch: Tasks a worker holds unacknowledged.
        calibration: Seconds the calibration of one worker lasts.
    """

    target_time: float = 2.0
    capacity: float | None = None
    min_workers: int = 1
    max_workers: int = 8
    window: float = 10.0
    poll: float = 1.0
    prefetch: int = DEFAULT_PREFETCH
    calibration: float = 3.0

    def __post_init__(self) -> None:
        if not self.poll > 0 or not self.calibration > 0:
            raise ValueError(
                f"poll and calibration must be positive, got {self.poll}, {self.calibration}"
            )
        if self.prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {self.prefetch}")
        # Checks T, C, min, max and the window now, before any worker starts.
        self.policy(1.0 if self.capacity is None else self.capacity)

    def policy(self, capacity: float) -> PolicyConfig:
        """The policy's parameters, with ``C`` known."""
        return PolicyConfig(
            capacity=capacity,
            target_time=self.target_time,
            min_workers=self.min_workers,
            max_workers=self.max_workers,
            window=self.window,
        )


def add_master_arguments(parser: argparse.ArgumentParser, defaults: MasterOptions) -> None:
    """The master's flags, with ``defaults`` shown in the help."""
    group = parser.add_argument_group("scaling policy: N = ceil((B + lambda*T) / C)")
    group.add_argument(
        "-T",
        "--target-time",
        type=float,
        default=defaults.target_time,
        help="T: seconds in which to drain the backlog (default: %(default)s)",
    )
    group.add_argument(
        "-C",
        "--capacity",
        type=float,
        default=defaults.capacity,
        help="C: messages one worker handles in T seconds (default: measure one worker "
        "for --calibration seconds at start-up)",
    )
    # The remaining flags share one shape: a long flag, a type, the default shown.
    plain_flags = (
        ("--min", "min_workers", int, "fewest workers"),
        ("--max", "max_workers", int, "most workers"),
        ("--window", "window", float, "seconds of lower recommendations before scaling down"),
        ("--poll", "poll", float, "seconds between two measurements"),
        ("--prefetch", "prefetch", int, "tasks a worker holds unacknowledged"),
        (
            "--calibration",
            "calibration",
            float,
            "seconds to measure one worker when -C is not given",
        ),
    )
    for flag, dest, kind, help_text in plain_flags:
        group.add_argument(
            flag,
            dest=dest,
            type=kind,
            default=getattr(defaults, dest),
            help=f"{help_text} (default: %(default)s)",
        )


def options_from_args(args: argparse.Namespace) -> MasterOptions:
    """The options given by :func:`add_master_arguments`'s flags; ValueError if invalid."""
    return MasterOptions(
        target_time=args.target_time,
        capacity=args.capacity,
        min_workers=args.min_workers,
        max_workers=args.max_workers,
        window=args.window,
        poll=args.poll,
        prefetch=args.prefetch,
        calibration=args.calibration,
    )


def wait_for_consumers(settings: Settings, count: int, timeout: float) -> None:
    """Block until exactly ``count`` processes consume ``<ns>.filter.tasks``.

    Raises:
        TimeoutError: naming the count seen last.
    """
    names = Names(settings.namespace)
    connection = connect(settings, "dynamic-master")
    try:
        with link_errors_as_unavailable(settings):
            channel = connection.channel()
            declare_task_queue(channel, names)
            deadline = time.monotonic() + timeout
            while True:
                seen = channel.queue_declare(names.filter_tasks, passive=True).method.consumer_count
                if seen == count:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{seen} consumer(s) on {names.filter_tasks} after {timeout:g} s, "
                        f"expected {count}; see the workers' log above"
                    )
                time.sleep(0.05)
    finally:
        close_quietly(connection)


@dataclass
class LocalMaster:
    """A running master and what it was configured with."""

    master: Master
    policy: PolicyConfig
    #: Measured at start-up, or ``C / T`` when C was given.
    worker_rate: float


@contextmanager
def local_master(
    settings: Settings, options: MasterOptions, offered: OfferedRate | None = None
) -> Iterator[LocalMaster]:
    """Start one worker, calibrate it unless ``C`` was given, and yield the master.

    Calibration needs that worker to be the only consumer of the queue. On exit every
    worker is stopped gracefully and waited for, also after an error.

    Raises:
        CalibrationFailed: when one worker cannot be measured.
        BrokerUnavailable: when RabbitMQ cannot be reached.
    """
    RABBITMQ.check(settings)
    launcher = LocalProcessLauncher(settings, options.prefetch)
    observer: RabbitObserver | None = None
    try:
        launcher.start(1)
        if options.capacity is None:
            wait_for_consumers(settings, 1, timeout=max(10.0, settings.timeout))
            log.info("calibrating one worker for %.0f s", options.calibration)
            worker_rate = measure_worker_rate(settings, options.calibration)
            capacity = worker_rate * options.target_time
        else:
            capacity = options.capacity
            worker_rate = capacity / options.target_time
        policy = options.policy(capacity)
        log.info(
            "C = %.1f messages per worker per T = %g s (%.1f msg/s per worker)",
            capacity,
            options.target_time,
            worker_rate,
        )
        observer = RabbitObserver(settings, options.prefetch, worker_rate)
        master = Master(observer, launcher, ScalingPolicy(policy), offered)
        yield LocalMaster(master, policy, worker_rate)
    finally:
        if observer is not None:
            observer.close()
        launcher.close()


def check_broker(settings: Settings) -> None:
    """Raise BrokerUnavailable unless RabbitMQ answers: before a run says anything else."""
    RABBITMQ.check(settings)


def delete_namespace(settings: Settings) -> None:
    """Delete the broker objects of ``settings.namespace``, the workers' report exchange
    included. Nothing of any other namespace is touched."""
    RABBITMQ.cleanup(settings)
