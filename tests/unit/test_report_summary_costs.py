"""The report's opening summary, its CPU-per-operation and guarantee sections, and
``python -m results compare``, all on synthetic study files (nothing is measured)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from results.cli import main as results_main
from results.compare import compare_runs, verdict
from results.data import main_guarantee
from results.files import STRESS_COLUMNS, write_study
from results.histogram import encode, new_histogram, record_seconds
from results.report import build_report
from results.summary import MAX_LINES
from tests.helpers import SYNTHETIC_ENVIRONMENT

#: (middleware, CPU µs per operation of the clients, service and broker) at-least-once.
COSTS = {"redis": (20.0, 60.0, 30.0), "rabbitmq": (25.0, 150.0, 200.0)}


def run(
    middleware: str,
    service: str,
    clients: int,
    repeat: int,
    rate: float,
    guarantee: str = "at-least-once",
    cpu: tuple[float, float, float] | None = None,
    work_ms: float = 0.0,
) -> dict:
    """One run's JSON entry with ``rate`` ops/s, 1 ms per operation."""
    histogram = new_histogram()
    for _ in range(int(rate)):
        record_seconds(histogram, 0.001)
    row = dict.fromkeys(STRESS_COLUMNS, 0)
    # As a row of an older file reads back: no CPU per operation unless ``cpu`` is given.
    row.update(dict.fromkeys((c for c in STRESS_COLUMNS if c.startswith("cpu_us_per_op")), None))
    row.update(
        middleware=middleware, service=service, mode="sync", loop="closed", window=1,
        rate=0.0, clients=clients, nodes=1, repeat=repeat, work_ms=work_ms,
        work_kind="sleep", duration_s=1.0, completed=int(rate), sent=int(rate),
        throughput_ops_s=rate, p50_ms=1.0, p99_ms=1.0 + work_ms, machine_cpu_pct=50.0,
        service_cpu_pct=50.0, broker_cpu_pct=20.0, loadgen_cpu_pct=30.0, trusted=True,
        flags="", namespace=f"ns-{middleware}-{service}-{clients}-{repeat}-{guarantee}",
        started_at="2025-01-01T00:00:00+00:00", guarantee=guarantee,
    )  # fmt: skip
    if cpu is None:
        # No CPU per operation measured (as in a file from before those columns).
        row.update({c: math.nan for c in row if c.startswith("cpu_us_per_op_")})
    else:
        client, service_us, broker = cpu
        row.update(
            cpu_us_per_op_client=client,
            cpu_us_per_op_service=service_us,
            cpu_us_per_op_broker=broker,
            cpu_us_per_op_total=client + service_us + broker,
        )
    detail = {"histogram": encode(histogram), "processes": {}, "error_samples": []}
    return {"row": row, "detail": detail}


def write(directory: Path, runs: list[dict], repeat: int) -> Path:
    document = {
        "command": ["python", "-m", "stress"],
        "config": {"clients": [1, 2], "warmup": 1.0, "duration": 1.0, "repeat": repeat,
                   "mix": "random_insult=8", "window": 16, "rate": 0.0},
        "environment": SYNTHETIC_ENVIRONMENT,
        "runs": runs,
        "failures": [],
    }  # fmt: skip
    write_study(directory, "stress", [r["row"] for r in runs], document)
    return directory


def costed_runs(repeats: int, guarantees: tuple[str, ...]) -> list[dict]:
    """Both services and the echo on two middlewares; at-most-once runs are 1.5x as fast
    and cost two thirds of the CPU per operation. Repeats differ by 20% in throughput
    but only 2% in CPU per operation, as on a busy shared machine."""
    runs = []
    for middleware, (client, service_us, broker) in COSTS.items():
        for guarantee in guarantees:
            cheaper = 1.0 if guarantee == "at-least-once" else 2 / 3
            for service in ("insult", "echo"):
                for clients in (1, 2):
                    for repeat in range(1, repeats + 1):
                        jitter = 1 + 0.2 * (repeat - 1)
                        cpu_jitter = 1 + 0.02 * (repeat - 1)
                        rate = 1000.0 * clients * jitter / cheaper
                        if middleware == "rabbitmq":
                            rate /= 2
                        cost = tuple(cheaper * cpu_jitter * c for c in (client, service_us, broker))
                        runs.append(
                            run(middleware, service, clients, repeat, rate, guarantee, cost)
                        )
    return runs


def test_the_report_opens_with_a_short_summary_and_numbers_its_figures(tmp_path):
    write(tmp_path, costed_runs(1, ("at-least-once",)), repeat=1)
    report = build_report(tmp_path).read_text()
    opening = report.split("## Summary\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert 1 <= len(opening) <= MAX_LINES
    assert opening[0].startswith("- **insult** at 2 clients (ops/s): redis 2,000 > rabbitmq")
    assert any("One repeat" in line for line in opening)
    assert report.index("## Summary") < report.index("## Single-node")
    numbers = [int(n) for n in re.findall(r"\*Figure (\d+)\. ", report)]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 3
    # One repeat: the short tables say n/a, never a spread of 0.0.
    body = report.split("# Appendix")[0]
    assert "| n/a |" in body and "| 0.0 |" not in body


def test_cpu_per_operation_table_ranks_the_middlewares_and_says_why_it_is_steady(tmp_path):
    write(tmp_path, costed_runs(2, ("at-least-once",)), repeat=2)
    report = build_report(tmp_path).read_text()
    section = report.split("## CPU per operation", 1)[1].split("\n## ", 1)[0]
    assert "survives a noisy shared machine" in section
    # Repeats differ by 20% in ops/s but 2% in CPU per operation.
    assert "differed by 18% (median over the rows below) and their CPU per operation by 2%" in (
        section
    )
    insult = section.split("**insult**", 1)[1]
    ranks = re.findall(r"\| (\d) \| (\w+) \| ([\d,]+) \|", insult)
    assert [(r[0], r[1]) for r in ranks[:2]] == [("1", "redis"), ("2", "rabbitmq")]
    assert int(ranks[0][2]) < int(ranks[1][2].replace(",", ""))
    assert (tmp_path / "figures" / "cpu-per-operation.png").exists()
    # Only one guarantee measured: no figure, a line saying how to get one.
    assert "measured at-least-once only" in report
    assert not (tmp_path / "figures" / "guarantee-cost.png").exists()


def test_guarantee_figure_sets_both_guarantees_side_by_side(tmp_path):
    write(tmp_path, costed_runs(1, ("at-least-once", "at-most-once")), repeat=1)
    report = build_report(tmp_path).read_text()
    assert (tmp_path / "figures" / "guarantee-cost.png").exists()
    section = report.split("## What the delivery guarantee costs", 1)[1].split("\n## ", 1)[0]
    assert "| insult | redis | 2,000 | 3,000 | x1.50 | 110 | 73 | x1.50 |" in section
    # The main sections show at-least-once only: the ranking is not mixed with the rest.
    assert "- **insult** at 2 clients (ops/s): redis 2,000 > rabbitmq 1,000" in report


def test_a_report_without_the_new_columns_has_neither_section(tmp_path):
    runs = [run(m, s, c, 1, 1000.0) for m in COSTS for s in ("insult", "echo") for c in (1, 2)]
    write(tmp_path, runs, repeat=1)
    report = build_report(tmp_path).read_text()
    assert "## CPU per operation" not in report
    assert "## What the delivery guarantee costs" not in report


def test_verdict_uses_the_noise_band():
    assert verdict(12.0, 10.0) == "better"
    assert verdict(-12.0, 10.0) == "worse"
    assert verdict(-8.0, 10.0) == "within noise"


def test_compare_flags_a_slowed_run_as_worse_and_fails_on_regression(tmp_path, capsys):
    services = ("insult", "filter", "echo")
    reference = write(
        tmp_path / "a", [run("redis", s, c, r, 1000.0 * c * (1 + r / 100))
                         for s in services for c in (1, 2) for r in (1, 2, 3)], repeat=3
    )  # fmt: skip
    # The same run, except that the filter does 2 ms of work and runs at half the rate.
    slowed = write(
        tmp_path / "b",
        [run("redis", s, c, r, 1000.0 * c * (1 + r / 100) * (0.5 if s == "filter" else 1.0),
             work_ms=2.0 if s == "filter" else 0.0)
         for s in services for c in (1, 2) for r in (1, 2, 3)], repeat=3,
    )  # fmt: skip
    tables, notes = compare_runs(reference, slowed)
    assert set(tables) == {"stress"}
    table = tables["stress"]
    keys = zip(table["workload"], table["clients"], strict=True)
    verdicts = dict(zip(keys, table["verdict"], strict=True))
    assert verdicts[("filter", 1)] == verdicts[("filter", 2)] == "worse"
    assert verdicts[("insult", 1)] == verdicts[("echo", 2)] == "within noise"
    assert table.loc[table["workload"] == "filter", "noise_pct"].max() == pytest.approx(2, abs=0.1)
    assert "stress: work_ms differs: 0 in A, 2 in B" in notes
    with pytest.raises(SystemExit) as exit_info:
        results_main(["compare", str(reference), str(slowed), "--fail-on-regression", "20"])
    assert exit_info.value.code == 1
    assert "REGRESSION: 2 row(s)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        results_main(["compare", str(reference), str(reference), "--fail-on-regression", "5"])
    assert exit_info.value.code == 0
    assert "0 worse" in capsys.readouterr().out


def test_compare_of_a_directory_without_a_run_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        results_main(["compare", str(tmp_path), str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no stress.csv or speedup.csv" in capsys.readouterr().err


def test_the_main_sections_keep_the_at_least_once_rows_of_a_study_of_both():
    both = pd.DataFrame(
        {"guarantee": ["at-most-once", "at-least-once", "at-most-once"], "nodes": [1, 1, 2]}
    )
    assert list(main_guarantee(both)["guarantee"]) == ["at-least-once"]
    weak_only = both[both["guarantee"] == "at-most-once"]
    assert main_guarantee(weak_only) is weak_only
