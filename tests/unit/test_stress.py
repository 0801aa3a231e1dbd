"""The stress harness's measurement rules, checked against fakes (no broker needed).

The fakes are in tests/stress_fakes.py, a light module: a run pickles
``functools.partial(FakeBackend, behaviour)`` into each client process, which imports
the fake's module before it can connect.
"""

from __future__ import annotations

import functools
import json
import random
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest

from middlewares.contract import (
    ServiceError,
)
from middlewares.settings import Settings
from middlewares.stub import StubEchoClient, StubFilterClient, StubInsultClient
from results.histogram import encode, merge, new_histogram, record_seconds, summary_ms
from stress import runner
from stress.calibrate import NoProcesses
from stress.cli import build_parser, client_counts
from stress.loadgen import operation_stream, run_pipelined, run_sync
from stress.plan import RunPlan
from stress.rows import flag_repeat_spread, run_flags
from stress.runner import RunFailed, isolated_settings, run_once
from stress.study import Cell, run_study
from stress.tally import Tally
from stress.workload import Workload, parse_mix
from tests.stress_fakes import FakeBackend, SilentFilterClient, WrongFilterClient

# --- histograms -------------------------------------------------------------------


def test_merged_histogram_holds_every_value_of_every_process():
    fast, slow = new_histogram(), new_histogram()
    for _ in range(990):
        record_seconds(fast, 0.001)
    for _ in range(10):
        record_seconds(slow, 0.100)
    merged = merge([encode(fast), encode(slow)])
    assert merged.get_total_count() == 1000
    result = summary_ms(merged)
    assert result["p50_ms"] == pytest.approx(1.0, rel=0.01)
    assert result["p99_ms"] == pytest.approx(1.0, rel=0.01)
    assert result["p999_ms"] == pytest.approx(100.0, rel=0.01)
    assert result["max_ms"] == pytest.approx(100.0, rel=0.01)


def test_merging_is_not_averaging_percentiles():
    # Two processes: one saw only 1 ms operations, the other only 100 ms ones, 9:1.
    fast, slow = new_histogram(), new_histogram()
    for _ in range(900):
        record_seconds(fast, 0.001)
    for _ in range(100):
        record_seconds(slow, 0.100)
    averaged_p50 = (summary_ms(fast)["p50_ms"] + summary_ms(slow)["p50_ms"]) / 2
    merged_p50 = summary_ms(merge([encode(fast), encode(slow)]))["p50_ms"]
    assert merged_p50 == pytest.approx(1.0, rel=0.01)
    assert averaged_p50 == pytest.approx(50.5, rel=0.01)


def test_empty_histogram_summary_is_nan_not_zero():
    assert all(value != value for value in summary_ms(new_histogram()).values())


def test_latencies_beyond_the_range_are_clamped_not_lost():
    histogram = new_histogram()
    record_seconds(histogram, 3600.0)
    record_seconds(histogram, 0.0)
    assert histogram.get_total_count() == 2


# --- what counts as completed ------------------------------------------------------


class _Live:
    def __init__(self) -> None:
        self.values = [0, 0]

    def publish(self, tally: Tally) -> None:
        self.values = [tally.confirmed_total, tally.failed_total]


def _window(seconds: float = 0.3) -> Tally:
    now = time.monotonic()
    return Tally(warm_end=now, end=now + seconds)


def _never_stop() -> bool:
    return False


def test_only_confirmed_replies_in_the_window_are_completed():
    tally = Tally(warm_end=10.0, end=20.0)
    tally.issued(9.0)
    tally.confirmed(9.0, 10.5)  # sent in warm-up, done in the window: counted
    tally.issued(19.0)
    tally.confirmed(19.0, 20.5)  # done after the window: not counted in it
    tally.issued(15.0)
    tally.failed(15.2, ServiceError("refused"))
    tally.issued(16.0)
    tally.failed(17.0, TimeoutError("slow"))
    assert (tally.sent, tally.completed, tally.errors, tally.timeouts) == (3, 1, 1, 1)
    assert tally.histogram.get_total_count() == 1
    assert tally.sent_total - tally.confirmed_total == 2


def _refusing() -> bool:
    raise ServiceError("refused")


def test_failing_operations_are_errors_never_completions():
    tally = _window()
    run_sync(iter(lambda: _refusing, None), tally, tally.warm_end, 0.0, _never_stop, _Live())
    assert tally.completed == 0
    assert tally.errors > 0
    assert tally.sent_total == tally.failed_total
    assert tally.error_samples[0] == "ServiceError: refused"


def test_wrong_replies_are_errors_never_completions():
    client = WrongFilterClient(Settings())
    tally = _window()
    stream = operation_stream(Workload("filter"), client, random.Random(1))
    run_sync(stream, tally, tally.warm_end, 0.0, _never_stop, _Live())
    assert tally.completed == 0 and tally.errors > 0
    assert "wrong reply" in tally.error_samples


def test_tasks_that_never_complete_time_out_and_are_not_completed():
    tally = _window(0.2)
    workload = Workload("filter", mode="pipelined", window=4)
    run_pipelined(
        workload,
        SilentFilterClient(Settings()),
        random.Random(1),
        tally,
        tally.warm_end,
        0.0,
        0.3,
        _never_stop,
        _Live(),
    )
    assert tally.completed == 0
    assert tally.sent_total == 4, "the window caps what is in flight"
    assert tally.confirmed_total == 0 and tally.failed_total == 4


def test_pipelined_keeps_the_window_full_and_confirms_each_task():
    tally = _window(0.2)
    workload = Workload("filter", mode="pipelined", window=8)
    live = _Live()
    run_pipelined(
        workload,
        StubFilterClient(Settings()),
        random.Random(1),
        tally,
        tally.warm_end,
        0.0,
        1.0,
        _never_stop,
        live,
    )
    assert tally.completed > 8
    assert tally.sent_total == tally.confirmed_total
    assert live.values == [tally.confirmed_total, 0]


def test_open_loop_charges_latency_from_the_intended_send_time():
    # One client at 50 ops/s on a service taking 40 ms keeps up; at 100 ops/s it falls
    # behind, and the queueing shows in the latency although each call takes 40 ms.
    class SlowEcho(StubEchoClient):
        def echo(self, payload: str) -> str:
            time.sleep(0.04)
            return payload

    def p99(rate: float) -> float:
        tally = _window(0.6)
        stream = operation_stream(Workload("echo"), SlowEcho(), random.Random(1))
        run_sync(stream, tally, tally.warm_end, rate, _never_stop, _Live())
        return summary_ms(tally.histogram)["p99_ms"]

    assert p99(100.0) > 2 * p99(20.0)


def test_insult_mix_follows_the_weights():
    counts = {"random_insult": 0, "add_insult": 0, "get_insults": 0}

    class Counting(StubInsultClient):
        def add_insult(self, insult: str) -> bool:
            counts["add_insult"] += 1
            return True

        def get_insults(self) -> list[str]:
            counts["get_insults"] += 1
            return []

        def random_insult(self) -> str:
            counts["random_insult"] += 1
            return "x"

    stream = operation_stream(Workload("insult"), Counting(Settings()), random.Random(3))
    for _ in range(1000):
        assert next(stream)()
    assert counts["random_insult"] == pytest.approx(800, abs=60)
    assert counts["add_insult"] == pytest.approx(100, abs=40)


def test_mix_parsing_names_the_problem():
    assert parse_mix("random_insult=1,get_insults=0") == (
        ("random_insult", 1.0),
        ("get_insults", 0.0),
    )
    with pytest.raises(ValueError, match="op=weight"):
        parse_mix("shout=1")
    with pytest.raises(ValueError, match="positive"):
        parse_mix("random_insult=0")


def test_client_sweep_from_min_max_step():
    parser = build_parser()
    assert client_counts(parser, parser.parse_args(["--min", "1", "--max", "8"])) == [1, 2, 4, 8]
    assert client_counts(
        parser, parser.parse_args(["--min", "2", "--max", "6", "--step", "+2"])
    ) == [
        2,
        4,
        6,
    ]
    assert client_counts(parser, parser.parse_args(["--clients", "4,1,4"])) == [1, 4]


def test_runs_are_flagged_for_a_busy_load_generator_and_unconfirmed_operations():
    row = {
        "loadgen_cpu_max_pct": 97.0,
        "unconfirmed": 3,
        "completed": 10,
        "rate": 0.0,
        "throughput_ops_s": 5.0,
        "tasks": 0,
    }
    assert run_flags(row, lost=[], fatal=[]) == ["loadgen-cpu=97%", "unconfirmed=3"]
    healthy = {**row, "loadgen_cpu_max_pct": 40.0, "unconfirmed": 0}
    assert run_flags(healthy, lost=[], fatal=[]) == []
    assert run_flags({**healthy, "rate": 100.0}, [], []) == ["rate-not-sustained"]
    assert run_flags({**healthy, "tasks": 12}, [], []) == ["unfinished=2"]
    assert run_flags(healthy, lost=[1], fatal=["client 0: boom"]) == [
        "clients-lost=1",
        "clients-failed=1",
    ]


def test_repeats_differing_by_more_than_ten_percent_are_flagged():
    rows = [
        {"key": 1, "throughput_ops_s": rate, "flags": "", "trusted": True}
        for rate in (100.0, 104.0, 120.0)
    ] + [{"key": 2, "throughput_ops_s": rate, "flags": "", "trusted": True} for rate in (100, 105)]
    flag_repeat_spread(rows, ("key",))
    assert [row["trusted"] for row in rows] == [False, False, False, True, True]
    assert rows[0]["flags"] == "repeat-spread=19%"


# --- whole runs with client processes, against fakes --------------------------------


class RecordingDeployment:
    """A deploy factory that records whether the run stopped it."""

    def __init__(self) -> None:
        self.entered = self.exited = 0

    @contextmanager
    def __call__(self, settings: Settings) -> Iterator[NoProcesses]:
        self.entered += 1
        try:
            yield NoProcesses()
        finally:
            self.exited += 1


@pytest.fixture
def settings() -> Settings:
    return isolated_settings(Settings.from_env().with_changes(timeout=1.0), "test")


def _client_processes() -> list[psutil.Process]:
    """Client processes still alive: children of the multiprocessing fork server."""
    found = []
    for process in psutil.Process().children():
        try:
            if "forkserver" in " ".join(process.cmdline()):
                found += process.children(recursive=True)
        except psutil.NoSuchProcess:
            continue
    return found


def _run(behaviour: str, settings: Settings, clients: int = 2, **workload: object):
    deploy = RecordingDeployment()
    plan = RunPlan(
        "fake", Workload(**{"service": "echo", **workload}), clients, 1, duration=0.5, warmup=0.2
    )
    try:
        return run_once(plan, settings, deploy, functools.partial(FakeBackend, behaviour))
    finally:
        assert deploy.entered == deploy.exited == 1, "the deployment must always be stopped"


def test_a_clean_run_counts_every_confirmed_operation(settings):
    result = _run("instant", settings)
    row = result.row
    assert row["completed"] > 0 and row["errors"] == row["timeouts"] == 0
    assert row["unconfirmed"] == 0
    assert row["throughput_ops_s"] == pytest.approx(row["completed"] / 0.5)
    assert len(result.detail["clients"]) == 2
    assert sum(c["completed"] for c in result.detail["clients"]) == row["completed"]
    assert not _client_processes()


def test_a_service_that_refuses_everything_completes_nothing(settings):
    row = _run("refuse", settings).row
    assert row["completed"] == 0 and row["errors"] > 0
    assert "nothing-completed" in row["flags"] and "unconfirmed" in row["flags"]
    assert not _client_processes()


def test_tasks_without_results_are_timeouts(settings):
    row = _run("silent", settings, service="filter", mode="pipelined", window=4).row
    assert row["completed"] == 0
    # Each client filled its window once; every task timed out (1 s) during the drain.
    assert row["unconfirmed"] == 2 * 4
    assert "unconfirmed=8" in row["flags"] and not row["trusted"]
    assert not _client_processes()


def test_a_client_that_cannot_connect_fails_the_run_and_leaves_nothing(settings):
    with pytest.raises(RunFailed, match="start the fake broker"):
        _run("unreachable", settings)
    assert not _client_processes()


def test_a_hung_client_is_killed_and_the_run_flagged(settings, monkeypatch):
    monkeypatch.setattr(runner, "REPORT_GRACE_S", 0.5)
    started = time.monotonic()
    row = _run("hang", settings, clients=2).row
    assert time.monotonic() - started < 20
    assert "clients-lost=2" in row["flags"] and not row["trusted"]
    assert not _client_processes()


def test_open_loop_offered_rate_is_spread_over_the_clients(settings):
    row = _run("instant", settings, clients=2, rate=400.0).row
    assert row["loop"] == "open" and row["rate"] == 400.0
    assert row["throughput_ops_s"] == pytest.approx(400, rel=0.15)
    assert row["loadgen_cpu_max_pct"] < 90


def test_repeated_runs_of_the_same_plan_agree_on_a_fake(settings):
    rates = [
        _run("instant", settings, clients=1, rate=200.0).row["throughput_ops_s"] for _ in range(2)
    ]
    assert statistics.pstdev(rates) / statistics.mean(rates) < 0.1


# --- studies ------------------------------------------------------------------------


@contextmanager
def _broken_deployment(settings: Settings) -> Iterator[NoProcesses]:
    raise RuntimeError("the launcher crashed")
    yield NoProcesses()


@contextmanager
def _interrupting_deployment(settings: Settings) -> Iterator[NoProcesses]:
    raise KeyboardInterrupt
    yield NoProcesses()


def _cell(deploy, settings: Settings) -> Cell:
    plan = RunPlan("fake", Workload("echo", rate=100.0), 1, 1, duration=0.3, warmup=0.1)
    return Cell(plan, deploy, functools.partial(FakeBackend, "instant"), settings)


def test_a_failed_run_is_recorded_and_the_study_goes_on(tmp_path, settings):
    cells = [_cell(_broken_deployment, settings), _cell(RecordingDeployment(), settings)]
    outcome = run_study("stress", [], cells, tmp_path, {}, settings, calibration_s=0)
    assert len(outcome.rows) == 1 and not outcome.interrupted
    assert "the launcher crashed" in outcome.failures[0]["error"]
    document = json.loads(outcome.json.read_text())
    assert len(document["runs"]) == 1 and len(document["failures"]) == 1
    assert outcome.csv.read_text().count("\n") == 2, "header and one row"


def test_ctrl_c_keeps_what_was_measured(tmp_path, settings):
    cells = [_cell(RecordingDeployment(), settings), _cell(_interrupting_deployment, settings)]
    outcome = run_study("stress", [], cells, tmp_path, {}, settings, calibration_s=0)
    assert outcome.interrupted and len(outcome.rows) == 1
    assert json.loads(outcome.json.read_text())["interrupted"] is True
    assert not _client_processes()


def test_fixed_work_does_exactly_the_tasks_and_times_them(settings):
    row = _run("instant", settings, clients=3, tasks=600).row
    assert row["tasks"] == 600 and row["completed"] == 600
    assert row["unconfirmed"] == 0 and row["trusted"]
    assert 0 < row["duration_s"] < 30
    assert row["throughput_ops_s"] == pytest.approx(600 / row["duration_s"], rel=0.01)
    assert not _client_processes()


def test_pipelined_fixed_work_drains_its_window(settings):
    row = _run("instant", settings, clients=2, service="filter", mode="pipelined",
               window=8, tasks=301).row  # fmt: skip
    assert row["completed"] == 301 and row["unconfirmed"] == 0
    assert not _client_processes()
