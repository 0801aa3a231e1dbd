"""The speedup study: S(N) pairing, the n-node switch, and one short real run."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from middlewares.registry import get_backend
from middlewares.settings import Settings
from results.files import REQUIRED_COLUMNS, columns
from results.tables import add_speedup, summarise_speedup
from speedup import cli
from tests.conftest import require


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


def test_a_short_speedup_run_writes_the_speedup_column(tmp_path, capsys):
    settings = Settings.from_env()
    require(get_backend("redis"), settings)
    cli.main(
        [
            "--middleware", "redis", "--service", "filter", "--nodes", "1,2",
            "--duration", "1", "--warmup", "0.5", "--repeat", "1", "--work-ms", "2",
            "--calibrate", "0", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "S(N)" in printed
    table = pd.read_csv(tmp_path / "speedup.csv")
    assert list(table.columns) == list(columns("speedup"))
    assert set(REQUIRED_COLUMNS) | {"speedup"} <= set(table.columns)
    assert list(table["nodes"]) == [1, 2]
    assert table.loc[0, "speedup"] == 1.0
    assert table.loc[1, "speedup"] > 0
    assert (table["work_ms"] == 2.0).all()
    document = json.loads((tmp_path / "speedup.json").read_text())
    assert len(document["speedup_summary"]) == 2
    assert (tmp_path / "figures" / "speedup-filter-2ms.png").exists()
    assert "## Speedup with 1, 2 and 3 nodes" in (tmp_path / "REPORT.md").read_text()
