"""How the master starts and stops workers: one small interface, local processes here.

The master only ever calls :class:`WorkerLauncher`'s four methods, so the same policy
could drive containers or remote hosts by implementing them (the simulator implements
them over its queue model).
"""

from __future__ import annotations

import logging
import subprocess
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from middlewares.contract import ProcessSpec
from middlewares.launch.processes import start_process, stop_processes
from middlewares.settings import Settings

log = logging.getLogger("dynamic.launcher")

#: The worker program: the stock RabbitMQ filter worker, which reports its
#: acknowledgements to ``<ns>.filter.stats`` by itself.
WORKER_MODULE = "middlewares.rabbitmq.filter_worker"

#: One task at a time: with slow tasks the broker then hands each task to an idle
#: worker, a stopping worker gives back nothing it has not started, and a worker's
#: unacknowledged count is 0 or 1.
DEFAULT_PREFETCH = 1

#: Seconds a stopping worker gets to finish its task before it is killed. A killed
#: worker loses nothing (its unacknowledged task goes back to the queue) but may answer
#: that task twice, so the grace is generous.
STOP_GRACE = 30.0


class WorkerLauncher(ABC):
    """Starts and stops identical workers of one task queue."""

    @abstractmethod
    def start(self, count: int) -> list[str]:
        """Start ``count`` workers; returns their ids."""

    @abstractmethod
    def stop(self, worker_ids: Sequence[str]) -> None:
        """Ask these workers to finish what they hold and exit; returns at once."""

    @abstractmethod
    def workers(self) -> list[str]:
        """Ids of the workers running and not asked to stop, oldest first."""

    @abstractmethod
    def close(self) -> None:
        """Stop every worker and wait until all have exited."""

    def scale_to(self, count: int) -> None:
        """Start or stop workers until ``count`` run; the newest are stopped first."""
        running = self.workers()
        if count > len(running):
            self.start(count - len(running))
        elif count < len(running):
            self.stop(running[count:])


@dataclass
class _Worker:
    id: str
    process: subprocess.Popen[bytes]


class LocalProcessLauncher(WorkerLauncher):
    """Workers as child processes of this one (``python -m middlewares.rabbitmq.filter_worker``).

    Create and use it from the main thread: children are told to die with the thread
    that started them (see :mod:`middlewares.launch.processes`).
    """

    def __init__(
        self, settings: Settings, prefetch: int = DEFAULT_PREFETCH, grace: float = STOP_GRACE
    ) -> None:
        self._args = [*settings.to_args(), "--prefetch", str(prefetch)]
        self._grace = grace
        self._running: list[_Worker] = []
        self._stoppers: list[threading.Thread] = []
        self._started = 0

    def start(self, count: int) -> list[str]:
        """Start ``count`` worker processes; returns their ids (``worker-<n>``)."""
        ids = []
        for _ in range(count):
            self._started += 1
            spec = ProcessSpec(f"worker-{self._started}", WORKER_MODULE, self._args)
            self._running.append(_Worker(spec.name, start_process(spec)))
            ids.append(spec.name)
        return ids

    def stop(self, worker_ids: Sequence[str]) -> None:
        """SIGTERM these workers; a background thread waits for them (and kills laggards)."""
        wanted = set(worker_ids)
        stopping = [worker.process for worker in self._running if worker.id in wanted]
        self._running = [worker for worker in self._running if worker.id not in wanted]
        stopper = threading.Thread(
            target=stop_processes, args=(stopping, self._grace), name="worker-stopper"
        )
        stopper.start()
        self._stoppers = [thread for thread in self._stoppers if thread.is_alive()]
        self._stoppers.append(stopper)

    def workers(self) -> list[str]:
        """Running workers, oldest first; one that died on its own is dropped, with a warning."""
        alive = []
        for worker in self._running:
            status = worker.process.poll()
            if status is None:
                alive.append(worker)
            else:
                log.warning(
                    "%s (pid %d) exited with status %s", worker.id, worker.process.pid, status
                )
        self._running = alive
        return [worker.id for worker in alive]

    def close(self) -> None:
        """Stop every worker gracefully and wait for all, including those already stopping."""
        stop_processes([worker.process for worker in self._running], self._grace)
        self._running = []
        for stopper in self._stoppers:
            stopper.join()
        self._stoppers = []
