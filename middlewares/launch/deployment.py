"""Run a service from Python exactly as a user would: through the launcher.

Tests and harnesses use :class:`Deployment` to start ``python -m middlewares serve ...``
in its own process group, wait until the service answers, and stop it afterwards,
killing the whole group if anything is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Self

import psutil

from middlewares.cluster.client import connect
from middlewares.cluster.counters import read_node_counters as node_counters
from middlewares.contract import Backend, MiddlewareError
from middlewares.launch.cpu_cap import CpuCaps
from middlewares.registry import get_backend
from middlewares.settings import Settings


def check_node_form(backend: Backend, settings: Settings) -> None:
    """Raise :class:`~middlewares.contract.BrokerUnavailable` unless ``backend``'s n-node
    form could start: what :meth:`Backend.check` needs, and Redis, where every
    middleware's n-node form keeps its shared state."""
    backend.check(settings)
    connect(settings, timeout=min(settings.timeout, 3.0)).close()

class DeploymentFailed(RuntimeError):
    """The launcher exited or the service never answered; the message has its log tail."""


class Deployment:
    """One running service: ``with Deployment("redis", "filter", settings) as d: ...``.

    ``nodes=N`` runs the n-node form (``nodes=0``: only its coordination, ready once a
    node could join it); ``join_as=ID`` adds one node with that id to an n-node
    deployment already running in the same namespace; ``caps`` holds its nodes (and
    coordinators) to a fraction of one core each. ``wrapper`` goes before the launcher's
    command line, e.g. ``["ip", "netns", "exec", NAME]`` to run it on an emulated host
    (it must exec the launcher, so that signals reach it).
    """

    def __init__(
        self,
        middleware: str,
        service: str,
        settings: Settings,
        workers: int = 1,
        ready_timeout: float = 30.0,
        nodes: int | None = None,
        join_as: str | None = None,
        caps: CpuCaps | None = None,
        wrapper: list[str] | None = None,
    ) -> None:
        self.middleware = middleware
        self.wrapper = wrapper or []
        self.service = service
        self.settings = settings
        self.workers = workers
        self.nodes = nodes
        self.join_as = join_as
        self.caps = caps or CpuCaps()
        self.ready_timeout = ready_timeout
        self._process: subprocess.Popen[bytes] | None = None
        # Kept open for the deployment's whole life, closed in __exit__.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115

    def command(self) -> list[str]:
        """The launcher command line this deployment runs (``join`` with ``join_as``)."""
        if self.join_as is not None:
            join = [sys.executable, "-m", "middlewares", "join", self.middleware, self.service]
            node = ["--node-id", self.join_as, *self.caps.to_args()]
            return [*self.wrapper, *join, *node, *self.settings.to_args()]
        form = ["--workers", str(self.workers)] if self.nodes is None else [
            "--nodes", str(self.nodes)
        ]
        launcher = [sys.executable, "-m", "middlewares", "serve", self.middleware, self.service]
        # The caller owns the namespace: it reads what the service left (the per-node
        # counters, results) after the stop, and deletes the namespace itself.
        keep = ["--keep"]
        return [
            *self.wrapper, *launcher, *form, *keep, *self.caps.to_args(), *self.settings.to_args()
        ]

    def start(self) -> None:
        """Start the launcher and wait until the service answers a request."""
        self._process = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        backend = get_backend(self.middleware)
        deadline = time.monotonic() + self.ready_timeout
        probe_settings = self.settings.with_changes(timeout=2.0)
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                tail = self.log_tail()
                raise DeploymentFailed(f"launcher exited early: {_reason(tail)}\n{tail}")
            try:
                if self.nodes == 0:
                    backend.check_join(self.service, probe_settings)
                else:
                    probe(backend, self.service, probe_settings)
                return
            except (MiddlewareError, OSError) as error:
                last_error = error
                time.sleep(0.1)
        raise DeploymentFailed(
            f"{self.middleware} {self.service} did not answer within "
            f"{self.ready_timeout:.0f} s (last error: {last_error}):\n{self.log_tail()}"
        )

    def worker_pids(self) -> list[int]:
        """Pids of the launcher's children, i.e. the service and worker processes."""
        if self._process is None:
            return []
        try:
            return [child.pid for child in psutil.Process(self._process.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def node_pids(self) -> list[int]:
        """Pids of the n-node form's node processes (those started with ``--node-id``)."""
        pids = []
        for pid in self.worker_pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                if "--node-id" in psutil.Process(pid).cmdline():
                    pids.append(pid)
        return pids

    def node_counters(self) -> dict[str, int]:
        """Requests or tasks served by each node of the n-node form, by node id, as the
        nodes publish them in Redis (every half second, and when they stop)."""
        return node_counters(self.settings, self.service)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the launcher and its children printed."""
        self._log.seek(0)
        return "\n".join(self._log.read().decode(errors="replace").splitlines()[-lines:])

    def stop(self, grace: float = 20.0) -> None:
        """Ask the launcher to stop; kill the whole process group if it does not."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Anything the launcher left behind in its group goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self._log.close()


def _reason(log_tail: str) -> str:
    """The line of a launcher's log that says why it stopped: its last error, so a
    one-line summary of the failure is not cut off before the cause."""
    lines = [line.strip() for line in log_tail.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no output"])[-1]


def probe(backend: Backend, service: str, settings: Settings) -> None:
    """One real request, proving the service (and for the filter, a worker) is up."""
    if service == "insult":
        with backend.insult_client(settings) as client:
            client.random_insult()
    elif service == "filter":
        with backend.filter_client(settings) as client:
            client.filter("readiness probe", timeout=2.0)
    else:
        with backend.echo_client(settings) as client:
            client.echo("readiness probe")
