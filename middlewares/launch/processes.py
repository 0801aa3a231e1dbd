"""Start, watch and stop the OS processes of a deployment.

Children are started with ``python -m`` (never by path, so ``middlewares/redis`` cannot
shadow the ``redis`` library) and are asked by the kernel to die with their parent, so
even a SIGKILLed launcher leaves no process behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from middlewares.contract import ProcessSpec
from middlewares.launch.cpu_cap import Placement

_PR_SET_PDEATHSIG = 1
log = logging.getLogger("supervisor")


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. Linux only; elsewhere the supervisor's
    # own clean-up is the only guarantee.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def start_process(
    spec: ProcessSpec, placement: Placement | None = None
) -> subprocess.Popen[bytes]:
    """Start one process of a deployment; its output goes to this process's stderr.
    ``placement`` says how to start it under a CPU cap."""
    placement = placement or Placement()
    command = placement.command([sys.executable, "-m", spec.module, *spec.args])
    process = subprocess.Popen(
        command, stdout=sys.stderr, preexec_fn=_die_with_parent, env=placement.environment()
    )
    placement.started(process, spec.name)
    return process


@contextlib.contextmanager
def ignoring_ctrl_c() -> Iterator[None]:
    """Let clean-up finish even if Ctrl-C is pressed again meanwhile (in the main
    thread, the only one that receives signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_processes(processes: list[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM every process, wait up to ``grace`` seconds in all, then SIGKILL the rest."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("pid %d ignored SIGTERM for %.0f s; killing it", process.pid, grace)
            process.kill()
            process.wait()


@dataclass
class _Running:
    spec: ProcessSpec
    process: subprocess.Popen[bytes]
    restarts: int = 0
    started_at: float = field(default_factory=time.monotonic)
    # Deaths in a row within START_SECONDS of starting: it cannot start (a taken port).
    failed_starts: int = 0


class ProcessFailed(RuntimeError):
    """A process that must not die has exited."""


class Supervisor:
    """Keeps the processes of one deployment running until asked to stop.

    A process whose spec says ``restart`` is started again when it dies (a SIGKILLed
    filter worker comes back and recovers what it held, a killed coordinator comes back
    and the others reconnect), but one that exits with status 0 was removed on purpose
    (SIGTERM to a node) and is let go. Any other process ending ends the deployment,
    because the service it provided is gone; so does one that exits
    :data:`MAX_FAILED_STARTS` times in a row within :data:`START_SECONDS` of starting,
    which cannot start at all (its port is taken, its broker is missing).
    """

    #: A process that keeps dying is not restarted in a tight loop.
    RESTART_DELAY = 0.5
    #: A process that dies sooner than this after its start did not start.
    START_SECONDS = 5.0
    #: Failed starts in a row after which the deployment gives up.
    MAX_FAILED_STARTS = 3

    def __init__(
        self,
        specs: list[ProcessSpec],
        grace: float = 15.0,
        place: Callable[[ProcessSpec], Placement | None] | None = None,
    ) -> None:
        self._specs = specs
        self._grace = grace
        # How each process is started under its CPU cap (every start, restarts too).
        self._place = place or (lambda spec: None)
        self._running: list[_Running] = []

    def start(self) -> None:
        """Start every process, in order."""
        for spec in self._specs:
            self._running.append(_Running(spec, start_process(spec, self._place(spec))))
            log.info("started %s (pid %d)", spec.name, self._running[-1].process.pid)

    def check(self) -> None:
        """Restart dead restartable processes; raise :class:`ProcessFailed` for others."""
        for running in list(self._running):
            status = running.process.poll()
            if status is None:
                continue
            if not running.spec.restart:
                raise ProcessFailed(f"{running.spec.name} exited with status {status}")
            if status == 0:
                log.info("%s left the deployment", running.spec.name)
                self._running.remove(running)
                continue
            quick = time.monotonic() - running.started_at < self.START_SECONDS
            if quick and status > 0:  # an exit of its own, not a kill by a signal
                running.failed_starts += 1
            else:
                running.failed_starts = 0
            if running.failed_starts >= self.MAX_FAILED_STARTS:
                raise ProcessFailed(
                    f"{running.spec.name} exited with status {status} "
                    f"{running.failed_starts} times in a row right after starting"
                )
            log.warning("%s exited with status %s; restarting it", running.spec.name, status)
            time.sleep(self.RESTART_DELAY)
            running.process = start_process(running.spec, self._place(running.spec))
            running.started_at = time.monotonic()
            running.restarts += 1

    def pids(self) -> dict[str, int]:
        """The pid of each running process, by name."""
        return {running.spec.name: running.process.pid for running in self._running}

    def stop(self) -> None:
        """Stop everything, newest first, so workers go before what they depend on."""
        processes = [running.process for running in reversed(self._running)]
        stop_processes(processes, self._grace)
        self._running.clear()
