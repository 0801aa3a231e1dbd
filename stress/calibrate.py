"""How fast the load generator itself is: one client process against the stub backend.

The stub (:mod:`middlewares.stub`) answers every call at once, in the client process,
with the right reply, so a run against it measures only the harness's own cost per
operation (choosing
the operation, checking the reply, timing it, recording it in the histogram). If one
client process can drive far more operations per second than any middleware serves per
client, the load generator is not what limits a reported figure.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Iterator
from contextlib import contextmanager

from middlewares.registry import STUB, get_backend
from middlewares.settings import Settings
from stress.plan import RunPlan
from stress.runner import Deployed, isolated_settings, run_once
from stress.workload import Workload


class NoProcesses:
    """The deployment of the stub backend: nothing runs."""

    def worker_pids(self) -> list[int]:
        return []

    def node_pids(self) -> list[int]:
        return []


@contextmanager
def no_deployment(settings: Settings) -> Iterator[Deployed]:
    """A deploy factory for services that need no process."""
    yield NoProcesses()


#: The workloads calibrated, one per way the load generator issues operations.
CALIBRATED = (
    Workload("echo"),
    Workload("insult"),
    Workload("filter"),
    Workload("filter", mode="pipelined", window=16),
)


def calibrate(settings: Settings, duration: float = 2.0) -> list[dict[str, object]]:
    """For each workload of :data:`CALIBRATED`: the operations per second one client
    process drove against the stub backend, its CPU use, and the CPU time the
    harness spends per operation (hence how many operations one core can drive)."""
    results = []
    for workload in CALIBRATED:
        plan = RunPlan(STUB, workload, clients=1, repeat=1, duration=duration, warmup=0.5)
        stub = functools.partial(get_backend, STUB)
        row = run_once(plan, isolated_settings(settings, "calibrate"), no_deployment, stub).row
        cpu_seconds = row["loadgen_cpu_pct"] / 100 * duration
        # CPU time per operation does not depend on how much of a core the noisy machine
        # granted the client, so it is what says how many operations a core can drive.
        cpu_us = 1e6 * cpu_seconds / row["completed"] if row["completed"] else float("nan")
        results.append(
            {
                "workload": workload.label,
                "window": workload.window,
                "ops_s_per_client": row["throughput_ops_s"],
                "client_cpu_pct": row["loadgen_cpu_max_pct"],
                "cpu_us_per_op": round(cpu_us, 2),
                "ops_s_per_core": round(1e6 / cpu_us) if cpu_us > 0 else float("nan"),
            }
        )
    return results


def main() -> None:
    """``python -m stress.calibrate [--seconds S]``: print the load generator's capacity."""
    parser = argparse.ArgumentParser(
        prog="python -m stress.calibrate",
        description="How many operations per second one load-generating client process "
        "drives against an instant in-process fake service: the harness's own ceiling.",
    )
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="measured seconds per workload (default: 2)"
    )
    seconds = parser.parse_args().seconds
    print(f"one client process against an instant fake service, {seconds:g} s per workload")
    print(
        f"{'workload':18} {'ops/s measured':>15} {'client CPU %':>13} {'CPU µs per op':>14} "
        f"{'ops/s per core':>15}"
    )
    for result in calibrate(Settings.from_env(), seconds):
        print(
            f"{result['workload']:18} {result['ops_s_per_client']:>15,.0f} "
            f"{result['client_cpu_pct']:>13.0f} {result['cpu_us_per_op']:>14.2f} "
            f"{result['ops_s_per_core']:>15,.0f}"
        )


if __name__ == "__main__":
    main()
