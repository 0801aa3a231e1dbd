"""The files a study writes and the report reads: one tidy CSV and one JSON per study.

This module is the one place that knows their names and columns, so the harnesses that
write them and the plots and report that read them cannot disagree.

- ``<study>.csv``: one row per measured run (middleware, service, clients, nodes,
  repeat), the columns of :data:`STRESS_COLUMNS` (plus :data:`SPEEDUP_EXTRA` for the
  speedup study).
- ``<study>.json``: the configuration, the environment, the calibration of the load
  generator, every run (its row and details such as the encoded latency histogram and
  each process's CPU) and the runs that failed.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

SCHEMA_VERSION = 1
STUDIES = ("stress", "speedup")

#: What configures a run, as the first columns of its row.
RUN_KEYS = (
    "middleware",
    "service",
    "mode",
    "loop",
    "window",
    "rate",
    "clients",
    "nodes",
    "work_ms",
    "work_kind",
    "guarantee",
    "payload_words",
)

#: Columns of every run row, in order. Latencies are milliseconds, CPU is percent of one
#: core, except ``cpu_us_per_op_*``: CPU microseconds per completed operation of the
#: clients, the service processes, the broker and all three (``stress.rows``).
STRESS_COLUMNS = (
    *RUN_KEYS,
    "repeat",
    "duration_s",
    "warmup_s",
    "sent",
    "completed",
    "errors",
    "timeouts",
    "unconfirmed",
    "dead_lettered",
    "throughput_ops_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "mean_ms",
    "service_cpu_pct",
    "service_cpu_max_pct",
    "service_rss_mb",
    "broker_cpu_pct",
    "loadgen_cpu_pct",
    "loadgen_cpu_max_pct",
    "machine_cpu_pct",
    "cpu_us_per_op_client",
    "cpu_us_per_op_service",
    "cpu_us_per_op_broker",
    "cpu_us_per_op_total",
    "repeat_spread",
    "trusted",
    "flags",
    "namespace",
    "started_at",
)

#: What the speedup study adds: how N nodes were deployed and capped (fractions of one
#: core, 0 when uncapped, and the method that held the cap), the fixed work (0: a window
#: of ``duration_s``; otherwise ``duration_s`` is the time the work took), S(N) = X(N) /
#: X(1), the CPU of the busiest node, coordinator and broker process on the requests'
#: path (percent of one core), and what limited the run (results.bottleneck).
SPEEDUP_EXTRA = (
    "node_form",
    "node_cpu",
    "coordinator_cpu",
    "cap_method",
    "tasks",
    "speedup",
    "node_cpu_max_pct",
    "node_cpu_mean_pct",
    "coordinator_process",
    "coordinator_cpu_max_pct",
    "broker_process",
    "broker_cpu_max_pct",
    "bottleneck",
    "bottleneck_process",
    "bottleneck_cpu_pct",
    "bottleneck_limit_pct",
)

#: What configures one measured cell: runs that differ only by their repeat number form
#: one group (for the spread check), and one speedup curve is these keys but nodes.
CELL_KEYS = (*RUN_KEYS, "tasks", "node_cpu", "coordinator_cpu", "cap_method")

#: The columns the issue requires; reading a file without them is an error.
REQUIRED_COLUMNS = (
    "middleware",
    "service",
    "clients",
    "nodes",
    "repeat",
    "duration_s",
    "completed",
    "errors",
    "throughput_ops_s",
    "p50_ms",
    "p99_ms",
)


class ResultsFileError(ValueError):
    """A results file is missing or does not have the expected shape."""


def columns(study: str) -> tuple[str, ...]:
    """The CSV columns of ``study`` (``stress`` or ``speedup``)."""
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; expected one of {', '.join(STUDIES)}")
    return STRESS_COLUMNS + (SPEEDUP_EXTRA if study == "speedup" else ())


def csv_path(directory: Path, study: str) -> Path:
    """Where ``study``'s CSV lives in ``directory``."""
    return directory / f"{study}.csv"


def json_path(directory: Path, study: str) -> Path:
    """Where ``study``'s JSON lives in ``directory``."""
    return directory / f"{study}.json"


def write_study(
    directory: Path, study: str, rows: Iterable[dict[str, Any]], document: dict[str, Any]
) -> tuple[Path, Path]:
    """Write ``study``'s CSV (``rows``) and JSON (``document``); returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = columns(study)
    table = csv_path(directory, study)
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=wanted, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            missing = [c for c in wanted if c not in row]
            if missing:
                raise ResultsFileError(f"a {study} row lacks the columns {missing}")
            writer.writerow(row)
    full = {"study": study, "schema_version": SCHEMA_VERSION, **document}
    details = json_path(directory, study)
    details.write_text(
        json.dumps(_strict(full), indent=1, allow_nan=False) + "\n", encoding="utf-8"
    )
    return table, details


def _strict(value: Any) -> Any:
    """Replace NaN and infinities by null, which strict JSON readers accept."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(item) for item in value]
    return value


def read_table(directory: Path, study: str) -> pd.DataFrame | None:
    """``study``'s CSV as a data frame, or None when the study was not run here."""
    path = csv_path(directory, study)
    if not path.exists():
        return None
    # An all-empty flags column would otherwise be read as floats (NaN).
    table = pd.read_csv(path, dtype={"flags": str})
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ResultsFileError(f"{path} lacks the columns {', '.join(missing)}")
    if "flags" in table:
        table["flags"] = table["flags"].fillna("")
    return table


def read_document(directory: Path, study: str) -> dict[str, Any] | None:
    """``study``'s JSON, or None when the study was not run here."""
    path = json_path(directory, study)
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ResultsFileError(f"{path} is not valid JSON: {error}") from None
    if document.get("study") != study:
        raise ResultsFileError(f"{path} is not a {study} file")
    return document


def default_out(study: str) -> Path:
    """``results/runs/<study>-<UTC time>``: where a study writes unless told otherwise."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("results") / "runs" / f"{study}-{stamp}"
