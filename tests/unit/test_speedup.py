"""The speedup study: S(N) pairing, the n-node switch and the fixed-work sizes, without a
broker (one short real run is in tests/integration/test_speedup_run.py)."""

from __future__ import annotations

import argparse
import math

import pytest

from middlewares.settings import Settings
from results.tables import add_speedup, summarise_speedup
from speedup import cli
from speedup.fixed_work import AutoTasks, tasks_list
from stress.plan import RunPlan
from stress.study import Cell


def _row(nodes: int, repeat: int, rate: float) -> dict:
    return {
        "middleware": "redis",
        "service": "filter",
        "mode": "pipelined",
        "window": 16,
        "rate": 0.0,
        "clients": 4,
        "work_ms": 5.0,
        "work_kind": "sleep",
        "tasks": 0,
        "node_cpu": 0.25,
        "coordinator_cpu": 0.0,
        "cap_method": "cgroup-v1",
        "nodes": nodes,
        "repeat": repeat,
        "throughput_ops_s": rate,
        "p99_ms": 10.0,
        "service_cpu_pct": 20.0,
        "trusted": True,
        "flags": "",
        "node_form": "nodes",
    }


def test_speedup_pairs_each_run_with_the_one_node_run_of_its_repeat():
    rows = [_row(1, 1, 100), _row(2, 1, 190), _row(1, 2, 120), _row(2, 2, 240), _row(3, 2, 300)]
    add_speedup(rows)
    assert [r["speedup"] for r in rows] == [1.0, 1.9, 1.0, 2.0, 2.5]
    summary = summarise_speedup(rows).set_index("nodes")
    assert summary.loc[2, "speedup_mean"] == pytest.approx(1.95)
    assert summary.loc[2, "speedup_min"] == pytest.approx(1.9)
    assert summary.loc[2, "speedup_max"] == pytest.approx(2.0)
    assert summary.loc[2, "speedup_spread_pct"] == pytest.approx(100 * 0.1 / 1.95)
    assert summary.loc[3, "repeats"] == 1


def test_speedup_is_missing_not_invented_without_a_one_node_run():
    rows = [_row(2, 1, 190)]
    add_speedup(rows)
    assert math.isnan(rows[0]["speedup"])


def test_n_nodes_are_started_through_one_function():
    deployment = cli.start_nodes("redis", "filter", Settings(), 3)
    assert deployment.nodes == 3
    assert "--nodes" in deployment.command()


def test_nodes_must_include_one(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--nodes", "2,3"])
    assert exit_info.value.code == 2
    assert "--nodes must include 1" in capsys.readouterr().err


def test_fixed_work_needs_runs_without_simulated_work(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--tasks", "auto", "--work-ms", "5"])
    assert exit_info.value.code == 2
    assert "add 0 to --work-ms" in capsys.readouterr().err


def test_auto_fixed_work_is_what_one_node_did_in_the_timed_window_of_repeat_one():
    workload = cli.workload_for("filter", cli.build_parser().parse_args([]), tasks=1)
    plan = RunPlan("redis", workload, 4, 2, 5.0, 1.0, nodes=3)
    cell = Cell(plan, None, None, Settings(), resolve=AutoTasks())
    timed = {"middleware": "redis", "service": "filter", "work_ms": 0.0, "tasks": 0}
    rows = [
        {**timed, "nodes": 1, "repeat": 1, "completed": 51_234},
        {**timed, "nodes": 1, "repeat": 2, "completed": 40_000},
        {**timed, "nodes": 1, "repeat": 1, "completed": 9, "work_ms": 5.0},
    ]
    resolved = cell.resolve(cell, rows)
    assert resolved.plan.workload.tasks == 51_234 and resolved.resolve is None
    assert resolved.plan.nodes == 3 and resolved.plan.repeat == 2
    # The same curve keeps its size even when later rows would say otherwise.
    assert cell.resolve(cell, rows[1:]).plan.workload.tasks == 51_234


def test_tasks_lists_accept_counts_and_auto():
    assert tasks_list("0,auto,20000,auto") == [0, "auto", 20000]
    for bad in ("-1", "many", ","):
        with pytest.raises(argparse.ArgumentTypeError):
            tasks_list(bad)
