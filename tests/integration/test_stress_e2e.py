"""One short real run of ``python -m stress`` on Redis, from command line to report."""

from __future__ import annotations

import json

import pandas as pd
import psutil
import pytest
import redis

from middlewares.registry import get_backend
from middlewares.settings import Settings
from results.files import REQUIRED_COLUMNS, STRESS_COLUMNS
from stress.cli import main
from tests.helpers import require


def _launchers() -> list[psutil.Process]:
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if "middlewares" in process.cmdline() and "serve" in process.cmdline():
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


def test_a_short_stress_run_writes_data_figures_and_report(tmp_path, capsys):
    settings = Settings.from_env()
    require(get_backend("redis"), settings)
    main(
        [
            "--middleware", "redis", "--service", "filter", "--clients", "1,2",
            "--duration", "1", "--warmup", "0.5", "--repeat", "1", "--baseline",
            "--calibrate", "0.2", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "filter-pipelined(16)" in printed and "report:" in printed

    table = pd.read_csv(tmp_path / "stress.csv")
    assert list(table.columns) == list(STRESS_COLUMNS)
    assert set(REQUIRED_COLUMNS) <= set(table.columns)
    assert len(table) == 6, "filter sync, filter pipelined and echo, at 1 and 2 clients"
    assert (table["completed"] > 0).all()
    assert (table["unconfirmed"] == 0).all(), table[["service", "mode", "flags"]]
    assert (table["throughput_ops_s"] == (table["completed"] / table["duration_s"]).round(1)).all()

    document = json.loads((tmp_path / "stress.json").read_text())
    assert document["environment"]["brokers"]["Redis"][0].isdigit()
    assert document["environment"]["cpu_count"] >= 1
    assert document["config"]["clients"] == [1, 2]
    assert len(document["runs"]) == 6 and document["failures"] == []
    assert {c["workload"] for c in document["loadgen_calibration"]} >= {"echo", "filter"}

    report = (tmp_path / "REPORT.md").read_text()
    for figure in ("throughput-filter", "latency-filter", "cpu-filter"):
        assert (tmp_path / "figures" / f"{figure}.png").exists()
        assert (tmp_path / "figures" / f"{figure}.svg").exists()
        assert f"figures/{figure}.png" in report

    assert not _launchers(), "every deployment must be stopped"
    broker = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    for namespace in table["namespace"]:
        assert not list(broker.scan_iter(f"{namespace}*")), f"{namespace} was not cleaned up"


@pytest.mark.parametrize("argv", [["--clients", "0"], ["--mix", "shout=1"], ["--warmup", "-1"]])
def test_bad_options_are_refused_with_a_message(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err
