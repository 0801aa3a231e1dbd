"""A study: many runs in a row, with progress, files written as it goes, and clean stops.

Both ``python -m stress`` and ``python -m speedup`` are a list of :class:`Cell` handed to
:func:`run_study`. It records the environment, calibrates the load generator, runs every
cell (a failed cell is recorded and the study goes on), flags repeats that disagree, and
rewrites the study's CSV and JSON after every run, so an interrupted or crashed study
keeps everything measured so far.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from middlewares.contract import Backend, MiddlewareError
from middlewares.launch.deployment import DeploymentFailed
from middlewares.settings import Settings
from results.files import CELL_KEYS, write_study
from results.report import build_report, print_summary
from stress.calibrate import calibrate
from stress.environment import collect_environment
from stress.plan import RunPlan
from stress.progress import RunProgress
from stress.rows import flag_repeat_spread
from stress.runner import DeployFactory, RunFailed, RunResult, isolated_settings, run_once

#: Failures a run reports on purpose, with a message meant for the user.
EXPECTED_FAILURES = (RunFailed, DeploymentFailed, MiddlewareError, OSError)

@dataclass(frozen=True)
class Cell:
    """One run of a study and how to deploy it.

    Attributes:
        plan: What to measure.
        deploy: Starts the service with the given settings.
        backend_factory: Returns the middleware's backend (picklable, for the clients).
        settings: Base settings; the run gets its own namespace and ports from them.
        extra: Columns the study adds to the run's row (e.g. ``node_form``).
        resolve: Called just before the run with the rows measured so far; returns the
            cell to run instead (e.g. with an amount of work sized from earlier runs).
        external: The deployment runs elsewhere (``--external-nodes``): the run uses
            ``settings`` as they are (namespace, ports, hosts) and deletes nothing.
    """

    plan: RunPlan
    deploy: DeployFactory
    backend_factory: Callable[[], Backend]
    settings: Settings
    extra: dict[str, Any] = field(default_factory=dict)
    resolve: Callable[[Cell, list[dict[str, Any]]], Cell] | None = None
    external: bool = False


@dataclass
class StudyOutcome:
    """What a study measured and where it wrote it."""

    rows: list[dict[str, Any]]
    failures: list[dict[str, str]]
    interrupted: bool
    csv: Path
    json: Path


def run_study(
    study: str,
    argv: list[str],
    cells: list[Cell],
    out: Path,
    config: dict[str, Any],
    settings: Settings,
    calibration_s: float = 1.0,
    finalize: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
) -> StudyOutcome:
    """Run every cell, writing ``<out>/<study>.csv`` and ``.json`` after each one.

    ``argv`` is the study's command line, recorded so the report can say how to rerun it.

    ``finalize(rows)`` may add columns to the rows (the speedup) and returns extra
    entries for the JSON document. Ctrl-C or SIGTERM stops after cleaning up the current
    run; the outcome then says ``interrupted``.
    """
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    document: dict[str, Any] = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": ["python", "-m", study, *argv],
        "config": config,
        "settings": settings.as_dict(),
        "environment": collect_environment(settings),
        "interrupted": False,
    }
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []

    def save() -> tuple[Path, Path]:
        flag_repeat_spread(rows, CELL_KEYS)
        extra = finalize(rows) if finalize else {}
        return write_study(
            out, study, rows, {**document, **extra, "runs": runs, "failures": failures}
        )

    paths = save()
    try:
        if calibration_s > 0:
            _say(f"calibrating the load generator ({calibration_s:g} s per workload)")
            document["loadgen_calibration"] = calibrate(settings, calibration_s)
        bar = tqdm(total=len(cells), desc=study, unit="run", file=sys.stderr, disable=None)
        for number, planned in enumerate(cells, 1):
            cell = planned.resolve(planned, rows) if planned.resolve else planned
            label = f"[{number}/{len(cells)}] {cell.plan.describe()}"
            bar.set_postfix_str(cell.plan.describe())
            try:
                result = _run_cell(study, cell)
            except Exception as error:  # one broken run must not end an hour-long study
                message = str(error) if isinstance(error, EXPECTED_FAILURES) else repr(error)
                failures.append({"run": cell.plan.describe(), "error": message})
                _say(f"{label}: FAILED: {str(error).splitlines()[0]}")
            else:
                row = {**result.row, **cell.extra}
                rows.append(row)
                runs.append({"row": row, "detail": result.detail})
                _say(f"{label}: {_one_line(row)}")
            bar.update()
            paths = save()
        bar.close()
    except KeyboardInterrupt:
        document["interrupted"] = True
        _say("interrupted: every process of the current run was stopped; keeping what was measured")
        paths = save()
    finally:
        signal.signal(signal.SIGTERM, previous_term)
    return StudyOutcome(rows, failures, document["interrupted"], *paths)


def conclude(study: str, outcome: StudyOutcome, out: Path, report: bool) -> None:
    """Print the study's summary table (and write its report unless ``report`` is
    False), say where the data is, and exit 130 if interrupted, 1 if a run failed."""
    print_summary(out, (study,))
    if report:
        print(f"\nreport: {build_report(out)}")
    print(f"data: {outcome.csv} and {outcome.json}")
    if outcome.interrupted:
        sys.exit(130)
    if outcome.failures:
        print(f"{len(outcome.failures)} run(s) failed; see 'failures' in {outcome.json}")
        sys.exit(1)


def _run_cell(study: str, cell: Cell) -> RunResult:
    plan = cell.plan
    settings = cell.settings if cell.external else isolated_settings(cell.settings, study)
    total = plan.warmup + plan.duration
    with RunProgress(plan.describe(), plan.warmup, total) as progress:
        started = time.monotonic()
        result = run_once(
            plan,
            settings,
            cell.deploy,
            cell.backend_factory,
            progress.update,
            cleanup=not cell.external,
        )
        result.detail["wall_s"] = round(time.monotonic() - started, 2)
    return result


def _one_line(row: dict[str, Any]) -> str:
    flags = f"  !! {row['flags']}" if row["flags"] else ""
    nodes = f", nodes {row['node_hosts']}" if row.get("node_hosts") else ""
    return (
        f"{row['throughput_ops_s']:,.0f} ops/s, p50 {row['p50_ms']:.2f} ms, "
        f"p99 {row['p99_ms']:.2f} ms, errors {row['errors'] + row['timeouts']}{nodes}{flags}"
    )


def _say(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt

