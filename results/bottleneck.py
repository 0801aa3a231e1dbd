"""What limited a run, read from the CPU each process used in its measurement window.

A run is limited by the first of these that holds:

- **architecture**: a coordinator (master, filter front, name server) or a broker
  process on the request path at 90% or more of a core (or of its own cap): every node
  waits on it, so more nodes cannot help;
- **machine**: the machine's cores 90% or more busy (everyone's processes together):
  nodes may not get their cap, and every process's CPU time per operation grows as
  they compete, so the figures say more about the host than about the architecture;
- **capacity**: a node at 90% or more of its CPU cap: the nodes are the limit, so
  each node added adds capacity (scaling works);
- **clients**: a load-generating client process at 90% or more of a core;
- **none**: nothing saturated: the clients wait for round trips (latency-bound).

The inputs are columns of a run's row (see ``stress.rows.process_columns``: the busiest
node, coordinator and broker process on the requests' path), plus the caps
(``node_cpu``, ``coordinator_cpu``, fractions of one core, 0 when uncapped) that a study
adds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from results.limits import SATURATED

#: Every kind of bottleneck, in the order they are looked for.
KINDS = ("architecture", "machine", "capacity", "clients", "none")


@dataclass(frozen=True)
class Bottleneck:
    """What limited one run.

    Attributes:
        kind: One of :data:`KINDS`.
        process: The limiting process: a coordinator's module, ``<process> (broker)``,
            ``nodes``, ``clients`` or ``machine`` (empty for ``none``).
        cpu_pct: Its CPU in percent of one core (for ``machine``: of all cores).
        limit_pct: What it may use, in the same unit (its cap, or 100).
    """

    kind: str
    process: str
    cpu_pct: float
    limit_pct: float

    def describe(self) -> str:
        """A few words, e.g. ``architecture: middlewares.xmlrpc.filter_service 97% of 100%``."""
        if self.kind == "none":
            return "none saturated (latency-bound)"
        return f"{self.kind}: {self.process} {self.cpu_pct:.0f}% of {self.limit_pct:.0f}%"


def _number(row: Mapping[str, Any], key: str) -> float:
    value = row.get(key)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return number


def _limit(fraction: float) -> float:
    """What a process capped at ``fraction`` of a core may use, in % (uncapped: 100)."""
    return 100 * fraction if fraction and not math.isnan(fraction) else 100.0


def _saturated(cpu: float, limit: float) -> bool:
    return not math.isnan(cpu) and cpu >= SATURATED * limit


def attribute(row: Mapping[str, Any]) -> Bottleneck:
    """The bottleneck of the run whose row is ``row``."""
    architecture = []
    coordinator = _number(row, "coordinator_cpu_max_pct")
    coordinator_limit = _limit(_number(row, "coordinator_cpu"))
    if _saturated(coordinator, coordinator_limit):
        process = str(row.get("coordinator_process") or "coordinator")
        architecture.append(Bottleneck("architecture", process, coordinator, coordinator_limit))
    broker = _number(row, "broker_cpu_max_pct")
    if _saturated(broker, 100.0):
        process = str(row.get("broker_process") or "broker")
        architecture.append(Bottleneck("architecture", f"{process} (broker)", broker, 100.0))
    if architecture:
        return max(architecture, key=lambda b: b.cpu_pct / b.limit_pct)
    machine = _number(row, "machine_cpu_pct")
    if _saturated(machine, 100.0):
        return Bottleneck("machine", "machine", machine, 100.0)
    node = _number(row, "node_cpu_max_pct")
    node_limit = _limit(_number(row, "node_cpu"))
    if _saturated(node, node_limit):
        return Bottleneck("capacity", "nodes", node, node_limit)
    clients = _number(row, "loadgen_cpu_max_pct")
    if _saturated(clients, 100.0):
        return Bottleneck("clients", "clients", clients, 100.0)
    return Bottleneck("none", "", math.nan, math.nan)


def add_bottlenecks(rows: list[dict[str, Any]]) -> None:
    """Set ``bottleneck``, ``bottleneck_process``, ``bottleneck_cpu_pct`` and
    ``bottleneck_limit_pct`` on every row."""
    for row in rows:
        found = attribute(row)
        row["bottleneck"] = found.kind
        row["bottleneck_process"] = found.process
        row["bottleneck_cpu_pct"] = round(found.cpu_pct, 1)
        row["bottleneck_limit_pct"] = round(found.limit_pct, 1)
