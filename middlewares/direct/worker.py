"""A filter worker of the direct middlewares: pulls leased batches from the front,
censors them and hands the results back with its next pull.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence

from middlewares.cluster.counters import node_counter
from middlewares.contract import BrokerUnavailable, InsultClient, MiddlewareError
from middlewares.direct.insult import DirectInsultClient
from middlewares.direct.transport import DirectTransport, Link
from middlewares.runtime import ServiceProcess, StopSignal, parse_node_id
from middlewares.secret import deployment_secret
from middlewares.service import FilterStep
from middlewares.settings import Settings

log = logging.getLogger(__name__)


#: Most tasks a worker asks for in one pull; the front also caps it at a fair share.
WORKER_BATCH = 64

#: Seconds one pull may wait for work before the worker checks whether it must stop.
POLL_WAIT = 1.0

#: How long a worker tries to reach a vanished front before it gives up and exits.
RECONNECT_WAIT = 30.0


class PullWorker:
    """Pulls, censors and hands back tasks until stopped: the body of a worker process.

    One pull (``worker_exchange``) hands in the results of the last batch and leases
    the next, so a busy worker costs one round trip per batch. ``heart`` is a second
    connection on which a thread heartbeats, so the front knows the worker lives even
    while it censors a long batch. ``step`` censors one task (the front has validated
    its text). ``served(n)``, if given, runs each time the front has accepted ``n``
    results (a node's counter). Every call carries the deployment ``secret``.

    A front that dies is waited for (up to :data:`RECONNECT_WAIT`): the worker registers
    again with the restarted one, which leases it work again.
    """

    def __init__(
        self,
        worker_id: str,
        secret: str,
        stop: StopSignal,
        front: Link,
        heart: Link,
        step: FilterStep,
        served: Callable[[int], None] | None = None,
    ) -> None:
        self._served = served
        self._worker_id = worker_id
        self._secret = secret
        self._stop = stop
        self._front = front
        self._heart = heart
        self._step = step

    def run(self) -> None:
        """Work until the stop signal, then hand in what is held and leave.

        Raises MiddlewareError when the front cannot be reached for
        :data:`RECONNECT_WAIT` seconds.
        """
        heartbeat_interval = self._register(deadline=time.monotonic() + RECONNECT_WAIT)
        threading.Thread(
            target=self._beat, args=[heartbeat_interval], name="heartbeat", daemon=True
        ).start()
        log.info("worker %s pulling tasks", self._worker_id)
        results: dict[str, str] = {}
        while not self._stop.is_set():
            try:
                tasks = self._front.call(
                    "worker_exchange",
                    self._worker_id,
                    self._secret,
                    results,
                    WORKER_BATCH,
                    POLL_WAIT,
                    wait=POLL_WAIT,
                )
            except MiddlewareError as error:
                if self._stop.is_set():
                    break
                # The batch just leased may be lost in transit: leaving and registering
                # again puts it back in the queue. Leaving hands in the results held, if
                # the front is the same; a restarted one leased them to nobody and has
                # them computed again.
                log.warning("lost the front (%s); reconnecting", error)
                self._hand_in(results)
                results = {}
                self._register(deadline=time.monotonic() + RECONNECT_WAIT)
                continue
            self._count_served(results)
            results = self._censor_all(tasks)
        if not self._hand_in(results):
            log.warning("could not hand in %d results on leaving", len(results))
        log.info("worker %s stopped", self._worker_id)

    def _hand_in(self, results: dict[str, str]) -> bool:
        """Leave the front with ``results``; False if it could not be reached."""
        try:
            self._front.call("worker_leave", self._worker_id, self._secret, results)
        except MiddlewareError as error:
            log.debug("could not leave the front: %s", error)
            return False
        self._count_served(results)
        return True

    def _count_served(self, results: dict[str, str]) -> None:
        if self._served is not None and results:
            self._served(len(results))

    def _censor_all(self, tasks: Sequence[Sequence[str]]) -> dict[str, str]:
        return {task_id: self._step.censor(text) for task_id, text in tasks}

    def _register(self, deadline: float) -> float:
        """Register with the front, retrying until ``deadline``; returns the heartbeat."""
        while True:
            try:
                return float(self._front.call("worker_register", self._worker_id, self._secret))
            except MiddlewareError:
                if time.monotonic() >= deadline or self._stop.is_set():
                    raise
            # The front starts alongside the workers, or is being restarted.
            self._stop.wait(0.2)

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self._heart.call("worker_heartbeat", self._worker_id, self._secret)
            except MiddlewareError as error:
                log.debug("heartbeat failed: %s", error)


#: Longest a refresh of the insult list may take: it holds up the batch being censored.
REFRESH_TIMEOUT = 1.0


class InsultListReader:
    """A worker's ``fetch_insults``: the list of the InsultService of the namespace, in
    either form, or None while none runs (the worker then censors the default list).

    ``connect`` makes an InsultClient of the worker's transport; ``absent`` is the error
    it raises when no InsultService is there, in which case the next call looks again.
    """

    def __init__(
        self,
        settings: Settings,
        connect: Callable[[Settings], InsultClient],
        absent: type[Exception],
    ) -> None:
        self._settings = settings.with_changes(timeout=min(settings.timeout, REFRESH_TIMEOUT))
        self._connect = connect
        self._absent = absent
        self._client: InsultClient | None = None

    def __call__(self) -> list[str] | None:
        try:
            if self._client is None:
                self._client = self._connect(self._settings)
            return self._client.get_insults()
        except self._absent:
            self.close()
            return None

    def close(self) -> None:
        """Close the client, if any."""
        if self._client is not None:
            self._client.close()
            self._client = None


def serve_worker(process: ServiceProcess, transport: DirectTransport) -> None:
    """The body of a worker process, until SIGINT or SIGTERM: a :class:`PullWorker` with
    two links to the front (pulls, heartbeats). With ``--node-id`` it is a node of the
    n-node form: its worker id is the node id and its served tasks are counted in Redis.
    A front that stays unreachable ends it with one line on stderr and exit status 2."""
    settings = process.settings
    node = process.args.node_id
    worker_id = node or process.args.worker_id
    insults = InsultListReader(
        settings, lambda short: DirectInsultClient(transport, short), transport.absent
    )
    with contextlib.ExitStack() as stack:
        served = None
        if node is not None:
            served = stack.enter_context(node_counter(settings, "filter", node)).increment
        worker = PullWorker(
            worker_id,
            deployment_secret(f"filter worker {worker_id}"),
            process.stop,
            front=transport.reach(settings, "filter"),
            heart=transport.reach(settings, "filter"),
            step=FilterStep(settings, insults),
            served=served,
        )
        try:
            worker.run()
        except MiddlewareError as error:
            raise BrokerUnavailable(
                transport.describe("filter"), f"worker {worker_id} cannot reach the front: {error}"
            ) from None
        finally:
            insults.close()


def add_worker_identity(parser: argparse.ArgumentParser) -> None:
    """``--worker-id ID`` (a worker of the one-node form) or ``--node-id ID`` (a node)."""
    identity = parser.add_mutually_exclusive_group(required=True)
    identity.add_argument(
        "--worker-id",
        type=parse_node_id,
        metavar="ID",
        help="stable id of this worker: a restart with the same id recovers its tasks",
    )
    identity.add_argument(
        "--node-id",
        type=parse_node_id,
        metavar="ID",
        help="run as node ID of the n-node form: the worker id is the node id, and the "
        "tasks served are counted in Redis",
    )
