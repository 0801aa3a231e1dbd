"""One cell of a study: which middleware and service, how loaded, for how long."""

from __future__ import annotations

from dataclasses import dataclass

from stress.workload import Workload


@dataclass(frozen=True)
class RunPlan:
    """One cell of a study: which service, how loaded, for how long.

    Attributes:
        middleware: Name of the middleware under test.
        workload: What the clients send.
        clients: Number of client processes.
        repeat: Number of this repetition, from 1.
        duration: Seconds of the measurement window.
        warmup: Seconds of load before the window, not counted.
        nodes: Nodes of the deployment (1 for the stress study).
        node_form: The deployment is the n-node form (the speedup study), whatever
            ``nodes``; its shared state lives in Redis.
    """

    middleware: str
    workload: Workload
    clients: int
    repeat: int
    duration: float
    warmup: float
    nodes: int = 1
    node_form: bool = False

    def describe(self) -> str:
        """A one-line label for progress output."""
        nodes = f" nodes={self.nodes}" if self.nodes != 1 else ""
        tasks = f" tasks={self.workload.tasks}" if self.workload.tasks else ""
        return (
            f"{self.middleware} {self.workload.label} clients={self.clients}{nodes}{tasks} "
            f"repeat={self.repeat}"
        )
