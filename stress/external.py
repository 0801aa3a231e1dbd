"""Measuring nodes started elsewhere: ``--external-nodes`` of ``python -m stress`` and
``python -m speedup``.

The study starts nothing. The user runs the coordination (``python -m middlewares serve
<mw> <service> --nodes 0``) and nodes (``python -m middlewares join ...``) on machines of
their choice, in the namespace the study is given; before each run the study waits, up
to a bound, until the deployment reports exactly the wanted number of live nodes
(:meth:`~middlewares.contract.Backend.live_nodes`) and answers a request. The run
records each node's id and host, and leaves the namespace as it found it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

from middlewares.contract import Backend, LiveNode, MiddlewareError
from middlewares.launch.deployment import DeploymentFailed, probe
from middlewares.settings import Settings
from stress.runner import DeployFactory

log = logging.getLogger("stress")

#: Seconds a study waits by default for the wanted nodes to be live.
DEFAULT_WAIT = 120.0

#: Seconds between two looks at the live nodes.
_POLL = 0.5

#: Nodes publish their counters every half second: after a run, wait this long so the
#: counts read include its last requests.
COUNTER_SETTLE = 1.0


def describe(nodes: list[LiveNode]) -> str:
    """``id@host, ...``, or ``none``."""
    return ", ".join(f"{node.id}@{node.host}" for node in nodes) or "none"


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


@dataclass
class ExternalDeployment:
    """A deployment running elsewhere, waited for instead of started.

    Entering waits up to ``wait`` seconds until exactly ``wanted`` nodes of ``service``
    are live in ``settings.namespace`` and the service answers, saying on stderr what
    it waits for (and what to start or stop) whenever that changes; raises
    :class:`DeploymentFailed` after that. It has no local processes to sample.
    """

    backend: Backend
    service: str
    settings: Settings
    wanted: int
    wait: float = DEFAULT_WAIT
    say: Callable[[str], None] = _to_stderr

    def __enter__(self) -> Self:
        deadline = time.monotonic() + self.wait
        probe_settings = self.settings.with_changes(timeout=min(self.settings.timeout, 5.0))
        said = ""
        while True:
            try:
                nodes = self.backend.live_nodes(self.service, self.settings)
                if len(nodes) == self.wanted:
                    probe(self.backend, self.service, probe_settings)
                    return self
                status = f"{len(nodes)} live: {describe(nodes)}"
            except MiddlewareError as error:
                status = f"not answering: {error}"
            if status != said:
                said = status
                self.say(self._waiting(status, deadline))
            if time.monotonic() >= deadline:
                raise DeploymentFailed(
                    f"{self.backend.name} {self.service} in namespace "
                    f"{self.settings.namespace} did not have {self.wanted} live nodes within "
                    f"{self.wait:g} s ({status})"
                )
            time.sleep(_POLL)

    def _waiting(self, status: str, deadline: float) -> str:
        left = max(0.0, deadline - time.monotonic())
        return (
            f"waiting up to {left:.0f} s for exactly {self.wanted} live "
            f"{self.backend.name} {self.service} node(s) in namespace "
            f"{self.settings.namespace} ({status}); start or stop nodes with "
            f"`python -m middlewares join {self.backend.name} {self.service} "
            f"--namespace {self.settings.namespace} ...` (docs/HOSTS.md)"
        )

    def __exit__(self, *exc_info: object) -> None:
        time.sleep(COUNTER_SETTLE)

    def worker_pids(self) -> list[int]:
        """None here: the service's processes run elsewhere."""
        return []

    def node_pids(self) -> list[int]:
        """None here: the nodes run elsewhere."""
        return []


def external_deployment(
    backend_factory: Callable[[], Backend], service: str, nodes: int, wait: float
) -> DeployFactory:
    """Waits for ``nodes`` live nodes of ``service`` instead of starting anything."""

    def deploy(settings: Settings) -> ExternalDeployment:
        return ExternalDeployment(backend_factory(), service, settings, nodes, wait)

    return deploy
