"""Fixed work sized to each middleware: ``--tasks auto``.

The assignment's speedup is S = T(1) / T(N) for a fixed amount of work M. One M for all
middlewares would take milliseconds on the fastest and minutes on the slowest, so
``auto`` takes M from the measurements: the operations one node completed in the
timed window of the first repeat (same middleware, service and simulated work). T(1)
is then about ``--duration`` everywhere, and every N and repeat of that curve does the
same M, as S = T(1) / T(N) requires.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stress.study import Cell

#: Written in place of a count to size the work from the timed runs.
AUTO = "auto"
#: Fixed work is never smaller than this, so that T(N) spans many CPU-quota periods.
MIN_TASKS = 2000
#: M when no timed one-node run was measured before (``--tasks auto`` without 0).
FALLBACK_TASKS = 20000


def tasks_list(text: str) -> list[int | str]:
    """Parse ``0,auto,20000`` for argparse: operation counts (0: the duration-based
    mode) or ``auto``."""
    values: list[int | str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part == AUTO:
            values.append(AUTO)
            continue
        try:
            number = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a count of operations or 'auto'"
            ) from None
        if number < 0:
            raise argparse.ArgumentTypeError(f"{part!r}: give a count of at least 0, or auto")
        values.append(number)
    if not values:
        raise argparse.ArgumentTypeError("give at least one count, e.g. 0,auto")
    return list(dict.fromkeys(values))


class AutoTasks:
    """Resolves the cells of ``--tasks auto`` (see the module), once per curve."""

    def __init__(self) -> None:
        self._sizes: dict[tuple[str, str, float], int] = {}

    def __call__(self, cell: Cell, rows: list[dict[str, Any]]) -> Cell:
        """``cell`` with its fixed work sized from the timed one-node runs in ``rows``."""
        plan = cell.plan
        key = (plan.middleware, plan.workload.service, cell.settings.work_ms)
        if key not in self._sizes:
            timed = [
                r
                for r in rows
                if (r["middleware"], r["service"], r["work_ms"]) == key
                and r["nodes"] == 1
                and not r.get("tasks")
            ]
            completed = timed[0]["completed"] if timed else FALLBACK_TASKS
            self._sizes[key] = max(MIN_TASKS, int(completed))
        workload = dataclasses.replace(plan.workload, tasks=self._sizes[key])
        return dataclasses.replace(
            cell, plan=dataclasses.replace(plan, workload=workload), resolve=None
        )
