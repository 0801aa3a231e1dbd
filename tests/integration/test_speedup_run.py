"""One short real run of ``python -m speedup`` on Redis, from command line to report."""

from __future__ import annotations

import json

import pandas as pd

from middlewares.registry import get_backend
from middlewares.settings import Settings
from results.files import REQUIRED_COLUMNS, columns
from speedup import cli
from tests.helpers import require


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
