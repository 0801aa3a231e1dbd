"""The speedup study: S(N) pairing, the n-node switch, and one short real run."""

from __future__ import annotations

import argparse
import json
import math

import pandas as pd
import pytest

from middlewares.registry import get_backend
from middlewares.settings import Settings
from results.files import REQUIRED_COLUMNS, columns
from results.tables import add_speedup, summarise_speedup
from speedup import cli
from speedup.fixed_work import AutoTasks, tasks_list
from stress.plan import RunPlan
from stress.study import Cell
from tests.helpers import require


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


def test_a_short_speedup_run_writes_capped_timed_and_fixed_work_columns(tmp_path, capsys):
    settings = Settings.from_env()
    require(get_backend("redis"), settings)
    cli.main(
        [
            "--middleware", "redis", "--service", "filter", "--nodes", "1,2",
            "--node-cpu", "0.25", "--tasks", "0,auto", "--duration", "1", "--warmup", "0.5",
            "--repeat", "1", "--calibrate", "0", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "node capacity: 0.25 of one core per node" in printed
    assert "S(N)" in printed
    table = pd.read_csv(tmp_path / "speedup.csv")
    assert list(table.columns) == list(columns("speedup"))
    assert set(REQUIRED_COLUMNS) | {"speedup", "node_cpu", "cap_method"} <= set(table.columns)
    assert list(table["nodes"]) == [1, 2, 1, 2]
    assert (table["node_cpu"] == 0.25).all()
    assert table["cap_method"].iloc[0] in ("cgroup-v2", "cgroup-v1", "systemd", "self")
    timed, fixed = table[table["tasks"] == 0], table[table["tasks"] > 0]
    assert fixed["tasks"].nunique() == 1, "every N of a curve does the same work"
    assert fixed["tasks"].iloc[0] >= max(2000, timed["completed"].iloc[0])
    assert (fixed["completed"] == fixed["tasks"]).all()
    assert table.loc[0, "speedup"] == 1.0 and table.loc[1, "speedup"] > 0
    assert set(table["bottleneck"]) <= {"architecture", "machine", "capacity", "clients", "none"}
    document = json.loads((tmp_path / "speedup.json").read_text())
    assert len(document["speedup_summary"]) == 4
    figures = tmp_path / "figures"
    assert (figures / "speedup-filter-0ms-cpu0.25.png").exists()
    assert (figures / "speedup-filter-0ms-cpu0.25-fixed.png").exists()
    report = (tmp_path / "REPORT.md").read_text()
    assert "## Speedup with 1, 2 and 3 nodes" in report
    assert "(the headline)" in report and "fixed work" in report
    assert "### What limits each middleware" in report


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
