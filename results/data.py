"""What a results directory holds, read and summarised once for every part of the report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from results.files import read_document
from results.node_loads import node_loads
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
    #: Every stress configuration, whatever its delivery guarantee; ``stress_summary``
    #: holds only those of the main guarantee (at-least-once when it was measured).
    stress_guarantees: pd.DataFrame


#: The guarantee the report's main sections show when a study measured several.
MAIN_GUARANTEE = "at-least-once"


def main_guarantee(summary: pd.DataFrame) -> pd.DataFrame:
    """The configurations of ``summary`` measured under the main guarantee (or, if it
    was not measured, under the first one that was)."""
    if summary.empty or summary["guarantee"].nunique() < 2:
        return summary
    present = list(summary["guarantee"].unique())
    chosen = MAIN_GUARANTEE if MAIN_GUARANTEE in present else present[0]
    return summary[summary["guarantee"] == chosen].reset_index(drop=True)


def load(directory: Path) -> ResultsData:
    """Read and summarise every study found in ``directory``."""
    stress = read_document(directory, "stress")
    speedup = read_document(directory, "speedup")
    everything = summarise(stress["runs"]) if stress else pd.DataFrame()
    stress_summary = with_baseline(main_guarantee(everything))
    if stress and not stress_summary.empty:
        stress_summary.attrs["cpu_count"] = stress["environment"].get("cpu_count")
    speedup_rows = [run["row"] for run in speedup["runs"]] if speedup else []
    return ResultsData(
        directory=directory,
        stress=stress,
        stress_summary=stress_summary,
        speedup=speedup,
        # Speedup curves of two guarantees would interleave: the report shows the main one.
        speedup_summary=main_guarantee(summarise_speedup(speedup_rows)),
        node_loads=node_loads(speedup["runs"]) if speedup else pd.DataFrame(),
        stress_guarantees=everything,
    )
