"""CPU microseconds per completed operation and the guarantee in every stress row: the
computation, a whole run against the stub backend, and the CSV and JSON a study writes.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from middlewares.settings import Settings
from middlewares.stub import StubBackend
from results.files import STRESS_COLUMNS, columns
from results.histogram import encode, new_histogram
from results.tables import summarise
from stress.plan import RunPlan
from stress.rows import cpu_per_operation
from stress.runner import isolated_settings, run_once
from stress.sampler import GroupUsage
from stress.study import Cell, run_study
from stress.workload import Workload

CPU_COLUMNS = (
    "cpu_us_per_op_client",
    "cpu_us_per_op_service",
    "cpu_us_per_op_broker",
    "cpu_us_per_op_total",
)


def _group(cpu_pct: float) -> GroupUsage:
    return GroupUsage(cpu_pct=cpu_pct, cpu_max_pct=cpu_pct, rss_mb=0.0, processes=())


def _usage(clients: float, service: float, brokers: float) -> dict[str, GroupUsage]:
    return {
        "clients": _group(clients),
        "service": _group(service),
        "nodes": _group(0.0),
        "brokers": _group(brokers),
    }


def test_cpu_per_operation_is_each_groups_cpu_over_the_completion_rate():
    # 50% of one core at 1000 ops/s is 500 µs of CPU per operation.
    columns_ = cpu_per_operation(_usage(clients=20.0, service=50.0, brokers=35.5), 1000.0)
    assert columns_ == {
        "cpu_us_per_op_client": 200.0,
        "cpu_us_per_op_service": 500.0,
        "cpu_us_per_op_broker": 355.0,
        "cpu_us_per_op_total": 1055.0,
    }


def test_cpu_per_operation_of_a_run_without_a_broker_is_zero_there():
    columns_ = cpu_per_operation(_usage(clients=100.0, service=150.0, brokers=0.0), 4000.0)
    assert columns_["cpu_us_per_op_broker"] == 0.0
    assert columns_["cpu_us_per_op_total"] == 250.0 + 375.0


@pytest.mark.parametrize("throughput", [0.0, math.nan])
def test_cpu_per_operation_is_nan_when_nothing_completed(throughput):
    columns_ = cpu_per_operation(_usage(10.0, 10.0, 10.0), throughput)
    assert set(columns_) == set(CPU_COLUMNS)
    assert all(math.isnan(value) for value in columns_.values())


def test_the_csv_columns_hold_the_guarantee_and_cpu_per_operation():
    for study in ("stress", "speedup"):
        for column in ("guarantee", *CPU_COLUMNS):
            assert column in columns(study)
    assert STRESS_COLUMNS.index("cpu_us_per_op_total") > STRESS_COLUMNS.index(
        "cpu_us_per_op_client"
    )


# --- whole runs against the stub backend ------------------------------------------


class _Spinning:
    """A deployment of one process that spins: service CPU a run must count."""

    def __init__(self, pid: int) -> None:
        self._pid = pid

    def worker_pids(self) -> list[int]:
        return [self._pid]

    def node_pids(self) -> list[int]:
        return []


@contextmanager
def _spinning_deployment(settings: Settings) -> Iterator[_Spinning]:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield _Spinning(spinner.pid)
    finally:
        spinner.kill()
        spinner.wait()


@pytest.fixture
def settings() -> Settings:
    base = Settings.from_env().with_changes(timeout=1.0, guarantee="at-most-once")
    return isolated_settings(base, "test")


def _plan() -> RunPlan:
    # Closed loop: the client process is busy all the window, so its CPU is well above
    # the clock-tick resolution of the process accounting.
    return RunPlan("stub", Workload("echo"), 1, 1, duration=1.0, warmup=0.2)


def test_a_run_row_has_the_guarantee_and_the_cpu_of_each_group_per_operation(settings):
    row = run_once(_plan(), settings, _spinning_deployment, StubBackend).row
    assert row["guarantee"] == "at-most-once"
    assert row["completed"] > 0
    # Each group's CPU (percent of one core) over the completion rate, in µs.
    for column, cpu in (
        ("cpu_us_per_op_service", row["service_cpu_pct"]),
        ("cpu_us_per_op_client", row["loadgen_cpu_pct"]),
    ):
        assert cpu > 0
        assert row[column] == pytest.approx(cpu * 1e4 / row["throughput_ops_s"], abs=0.1)
    assert row["cpu_us_per_op_broker"] == 0.0, "the stub has no broker"
    parts = sum(row[c] for c in CPU_COLUMNS[:3])
    assert row["cpu_us_per_op_total"] == pytest.approx(parts, abs=0.2)


def test_a_study_writes_the_columns_to_csv_and_json_and_summarises_them(tmp_path, settings):
    cell = Cell(_plan(), _spinning_deployment, functools.partial(StubBackend), settings)
    config = {"guarantee": settings.guarantee}
    outcome = run_study("stress", [], [cell], tmp_path, config, settings, calibration_s=0)
    with outcome.csv.open(newline="", encoding="utf-8") as handle:
        (written,) = list(csv.DictReader(handle))
    assert written["guarantee"] == "at-most-once"
    for column in CPU_COLUMNS:
        assert float(written[column]) >= 0
    assert float(written["cpu_us_per_op_service"]) > 0
    document = json.loads(outcome.json.read_text())
    (run,) = document["runs"]
    assert run["row"]["guarantee"] == "at-most-once"
    assert run["row"]["cpu_us_per_op_total"] == float(written["cpu_us_per_op_total"])
    summary = summarise(document["runs"])
    assert summary.loc[0, "guarantee"] == "at-most-once"
    assert summary.loc[0, "cpu_us_per_op_total"] == pytest.approx(run["row"]["cpu_us_per_op_total"])


def test_a_row_of_an_older_file_is_summarised_as_at_least_once():
    row = {
        "middleware": "stub",
        "service": "echo",
        "mode": "sync",
        "window": 1,
        "rate": 0.0,
        "clients": 1,
        "nodes": 1,
        "work_ms": 0.0,
        "throughput_ops_s": 10.0,
        "errors": 0,
        "timeouts": 0,
        "unconfirmed": 0,
        "service_cpu_pct": 1.0,
        "service_cpu_max_pct": 1.0,
        "loadgen_cpu_pct": 1.0,
        "loadgen_cpu_max_pct": 1.0,
        "machine_cpu_pct": 1.0,
        "trusted": True,
        "flags": "",
    }
    summary = summarise([{"row": row, "detail": {"histogram": encode(new_histogram())}}])
    assert summary.loc[0, "guarantee"] == "at-least-once"
    # An older row has no CPU per operation: the summary leaves the columns out, so the
    # report leaves out its CPU-per-operation section rather than print a column of n/a.
    assert "cpu_us_per_op_total" not in summary.columns
