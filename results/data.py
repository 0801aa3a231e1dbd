"""What a results directory holds, read and summarised once for every part of the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from results.files import read_document
from results.speedup_report import node_loads
from results.tables import (
    summarise,
    summarise_speedup,
    with_baseline,
)


@dataclass
class ResultsData:
    """What a results directory holds, summarised."""

    directory: Path
    stress: dict[str, Any] | None
    stress_summary: pd.DataFrame
    speedup: dict[str, Any] | None
    speedup_summary: pd.DataFrame
    node_loads: pd.DataFrame


def load(directory: Path) -> ResultsData:
    """Read and summarise every study found in ``directory``."""
    stress = read_document(directory, "stress")
    speedup = read_document(directory, "speedup")
    stress_summary = with_baseline(summarise(stress["runs"])) if stress else pd.DataFrame()
    if stress and not stress_summary.empty:
        stress_summary.attrs["cpu_count"] = stress["environment"].get("cpu_count")
    speedup_rows = [run["row"] for run in speedup["runs"]] if speedup else []
    return ResultsData(
        directory=directory,
        stress=stress,
        stress_summary=stress_summary,
        speedup=speedup,
        speedup_summary=summarise_speedup(speedup_rows),
        node_loads=node_loads(speedup["runs"]) if speedup else pd.DataFrame(),
    )
