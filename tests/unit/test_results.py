"""The study files' schema, and the figures and report drawn from them alone."""

from __future__ import annotations

import json
import math
import re

import pandas as pd
import pytest

from results.cli import main as results_main
from results.files import (
    REQUIRED_COLUMNS,
    STRESS_COLUMNS,
    ResultsFileError,
    read_document,
    read_table,
    write_study,
)
from results.histogram import encode, new_histogram, record_seconds
from results.report import build_report
from results.tables import summarise, with_baseline
from tests.helpers import SYNTHETIC_ENVIRONMENT


def fake_run(middleware: str, service: str, clients: int, repeat: int, rate: float) -> dict:
    """A run as ``python -m stress`` records it, with ``rate`` ops/s at 1 ms each."""
    histogram = new_histogram()
    for _ in range(int(rate)):
        record_seconds(histogram, 0.001 * clients)
    row = dict.fromkeys(STRESS_COLUMNS, 0)
    row.update(
        middleware=middleware,
        service=service,
        mode="sync",
        loop="closed",
        window=1,
        rate=0.0,
        clients=clients,
        nodes=1,
        repeat=repeat,
        work_ms=0.0,
        work_kind="sleep",
        guarantee="at-least-once",
        duration_s=1.0,
        completed=int(rate),
        sent=int(rate),
        throughput_ops_s=rate,
        p50_ms=1.0 * clients,
        p99_ms=1.0 * clients,
        p999_ms=math.nan,
        machine_cpu_pct=50.0,
        trusted=True,
        flags="",
        namespace=f"ns-{middleware}-{service}-{clients}-{repeat}",
        started_at="2025-01-01T00:00:00+00:00",
    )
    detail = {"histogram": encode(histogram), "processes": {}, "error_samples": []}
    return {"row": row, "detail": detail}


def write_fake_stress(directory, runs) -> None:
    document = {
        "command": ["python", "-m", "stress"],
        "config": {
            "clients": [1, 2],
            "warmup": 1.0,
            "duration": 1.0,
            "repeat": 2,
            "mix": "random_insult=8",
            "window": 16,
            "rate": 0.0,
        },
        "environment": SYNTHETIC_ENVIRONMENT,
        "loadgen_calibration": [
            {"workload": "echo", "window": 1, "ops_s_per_client": 500000.0,
             "client_cpu_pct": 99.0, "cpu_us_per_op": 2.0, "ops_s_per_core": 500000},
        ],
        "runs": runs,
        "failures": [{"run": "pyro insult clients=2 repeat=1", "error": "boom\ntrace"}],
    }  # fmt: skip
    write_study(directory, "stress", [run["row"] for run in runs], document)


@pytest.fixture
def study(tmp_path):
    runs = [
        fake_run(middleware, service, clients, repeat, rate * clients * (1 + repeat / 100))
        for middleware, rate in (("redis", 1000.0), ("rabbitmq", 400.0))
        for service in ("insult", "echo")
        for clients in (1, 2)
        for repeat in (1, 2)
    ]
    write_fake_stress(tmp_path, runs)
    return tmp_path


def test_csv_has_the_issue_columns_in_order_and_json_is_strict(study):
    table = read_table(study, "stress")
    assert list(table.columns) == list(STRESS_COLUMNS)
    assert set(REQUIRED_COLUMNS) <= set(table.columns)
    text = (study / "stress.json").read_text()
    assert "NaN" not in text
    document = json.loads(text)
    assert document["study"] == "stress" and document["schema_version"] == 1
    assert {"config", "environment", "runs", "failures"} <= set(document)
    assert document["runs"][0]["row"]["p999_ms"] is None


def test_rows_missing_a_column_are_refused(tmp_path):
    with pytest.raises(ResultsFileError, match="lacks the columns"):
        write_study(tmp_path, "stress", [{"middleware": "redis"}], {})


def test_reading_a_file_without_required_columns_fails_clearly(tmp_path):
    pd.DataFrame({"middleware": ["redis"]}).to_csv(tmp_path / "stress.csv", index=False)
    with pytest.raises(ResultsFileError, match="throughput_ops_s"):
        read_table(tmp_path, "stress")
    (tmp_path / "stress.json").write_text("{not json")
    with pytest.raises(ResultsFileError, match="not valid JSON"):
        read_document(tmp_path, "stress")


def test_repeats_are_combined_by_merging_histograms(study):
    summary = with_baseline(summarise(read_document(study, "stress")["runs"]))
    redis_insult = summary[(summary["middleware"] == "redis") & (summary["service"] == "insult")]
    two = redis_insult[redis_insult["clients"] == 2].iloc[0]
    assert two["repeats"] == 2
    assert two["throughput_ops_s"] == pytest.approx(2000 * 1.015)
    assert two["p50_ms"] == pytest.approx(2.0, rel=0.01)
    assert two["vs_echo_pct"] == pytest.approx(100.0)


def test_report_and_figures_come_from_the_files_alone(study):
    report_path = build_report(study)
    report = report_path.read_text()
    for heading in (
        "## Machine",
        "## How the numbers were taken",
        "## Load generator capacity",
        "## Single-node throughput and latency",
        "## Services against their transport",
        "## Ranking and what limits each middleware",
        "## Runs to treat with care",
    ):
        assert heading in report
    assert "redis (2,030 ops/s) > rabbitmq (812 ops/s)" in report
    assert "pyro insult clients=2 repeat=1 FAILED: boom" in report
    images = re.findall(r"\]\((figures/[^)]+\.png)\)", report)
    assert len(images) >= 4
    for image in images:
        assert (study / image).exists()
        assert (study / image).with_suffix(".svg").exists()


def test_the_baseline_target_is_checked_at_one_client_and_best_against_best(tmp_path):
    # xmlrpc's filter: 30% of its echo at 1 client, 80% best against best; redis's
    # filter: 90% throughout. Only the direct middleware's miss gets the path explanation.
    runs = [
        fake_run(middleware, service, clients, 1, rate)
        for middleware, service, clients, rate in (
            ("xmlrpc", "echo", 1, 1000.0),
            ("xmlrpc", "echo", 2, 1000.0),
            ("xmlrpc", "filter", 1, 300.0),
            ("xmlrpc", "filter", 2, 800.0),
            ("redis", "echo", 1, 1000.0),
            ("redis", "echo", 2, 1000.0),
            ("redis", "filter", 1, 900.0),
            ("redis", "filter", 2, 900.0),
        )
    ]
    write_fake_stress(tmp_path, runs)
    report = build_report(tmp_path).read_text()
    assert "| filter | xmlrpc | 1: 30%, 2: 80% | 80% | MISSES | meets |" in report
    assert "| filter | redis | 1: 90%, 2: 90% | 90% | meets | meets |" in report
    assert "here as low as 30%, xmlrpc with 1 client" in report


def test_results_cli_redraws_and_prints_the_table(study, capsys):
    with pytest.raises(SystemExit) as exit_info:
        results_main(["report", str(study)])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "redis" in printed and "ops/s" in printed and "REPORT.md" in printed


def test_results_cli_on_an_empty_directory_says_what_to_do(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        results_main(["report", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "python -m stress" in capsys.readouterr().err
