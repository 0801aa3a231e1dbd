"""The InsultFilter work queue of the direct middlewares (XML-RPC, Pyro4), both ends.

A front process owns a :class:`TaskQueue`; clients submit texts and collect results,
worker processes (:class:`PullWorker`) pull leased batches and hand results back.
Nothing here knows a transport: a front exposes the queue's methods as remote methods
(checking their arguments with the ``check_*`` functions), a worker reaches the front
through any :class:`FrontLink`. So the XML-RPC and Pyro4 forms, and an n-node master
whose workers pull from other nodes, share one queue and one worker loop.

Nothing accepted is lost while the front runs: a task pulled by a worker is *leased* to
it, and goes back to the head of the queue when that worker re-registers under the same
id (a restarted worker) or misses three heartbeats (a dead or stuck one). A result that
comes back twice, because a slow worker was presumed dead, is kept once: a task counts
as done the first time its result arrives.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import math
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from middlewares.cluster import NodeCounters, StartupBarrier, redis_client
from middlewares.contract import FilterClient, InsultClient, MiddlewareError
from middlewares.core import (
    Censor,
    InsultError,
    Limits,
    ResultLog,
    validate_limit,
    validate_text,
)
from middlewares.runtime import MAX_ID_CHARS, StopSignal, parse_node_id
from middlewares.service import RefreshingInsults
from middlewares.settings import Settings, simulate_work

log = logging.getLogger(__name__)

#: Seconds between two heartbeats of a worker; three missed ones re-queue its tasks.
HEARTBEAT_INTERVAL = 1.0
LEASE_TIMEOUT = 3 * HEARTBEAT_INTERVAL
#: How long a stopping front waits for its workers to hand in their last results.
WORKER_GRACE = 5.0
#: Longest a client call may block waiting for results.
MAX_WAIT = 60.0
#: Most texts in one submit_many, task ids in one wait_results, tasks in one pull.
MAX_BATCH = 10_000
#: Largest ``limit`` of get_results (a 32-bit integer); it returns at most result_limit.
MAX_LIMIT = 2**31 - 1
#: Most tasks queued or leased at once; beyond it submissions are refused until workers
#: catch up, rather than growing memory without bound.
MAX_OUTSTANDING = 100_000
#: Most finished results kept for clients that have not collected them; the oldest go.
MAX_UNCOLLECTED = 100_000
#: Most tasks a worker asks for in one pull; the front also caps it at a fair share.
WORKER_BATCH = 64
#: Seconds one pull may wait for work before the worker checks whether it must stop.
POLL_WAIT = 1.0
#: How long a worker tries to reach a vanished front before it gives up and exits.
RECONNECT_WAIT = 30.0
#: Longest a front with ``expected_workers`` holds its tasks back waiting for them.
STARTUP_GRACE = 15.0


@dataclass
class _Worker:
    """A worker the front has heard from, and the tasks it holds."""

    last_seen: float
    tasks: dict[str, str] = field(default_factory=dict)


class QueueFull(RuntimeError):
    """More tasks are waiting than the queue's ``max_outstanding``."""


class TaskQueue:
    """Queued tasks, tasks leased to workers, and results waiting to be collected.

    Thread-safe: every client call and worker call of a front runs on a thread of its own.
    With ``expected_workers`` (the n-node form) nothing is leased until that many workers
    have shown up or :data:`STARTUP_GRACE` passed, so the first worker to start does not
    take the first second's work alone and the load spreads from the first task.
    """

    def __init__(
        self,
        result_log: ResultLog,
        lease_timeout: float = LEASE_TIMEOUT,
        max_outstanding: int = MAX_OUTSTANDING,
        max_uncollected: int = MAX_UNCOLLECTED,
        expected_workers: int = 0,
    ) -> None:
        self._log = result_log
        self._barrier = StartupBarrier(expected_workers, STARTUP_GRACE)
        self._lease_timeout = lease_timeout
        self._max_outstanding = max_outstanding
        self._max_uncollected = max_uncollected
        self._lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)
        self._worker_left = threading.Condition(self._lock)
        self._pending: OrderedDict[str, str] = OrderedDict()
        # Every task not done yet -> the worker holding it, or None while queued.
        self._holder: dict[str, str | None] = {}
        self._workers: dict[str, _Worker] = {}
        self._results: OrderedDict[str, str] = OrderedDict()
        self._waiters: dict[str, list[threading.Event]] = {}
        self._closing = False
        # Ids unique across restarts of the front, so an old id never matches a new task.
        self._prefix = uuid.uuid4().hex[:8]
        self._counter = itertools.count(1)

    # -- clients ---------------------------------------------------------------------

    def submit(self, texts: Sequence[str]) -> list[str]:
        """Queue validated texts; returns their task ids. Raises :class:`QueueFull`."""
        with self._lock:
            if len(self._holder) + len(texts) > self._max_outstanding:
                raise QueueFull(
                    f"the filter queue is full ({len(self._holder)} texts wait, limit "
                    f"{self._max_outstanding}); collect results or retry later"
                )
            ids = [f"{self._prefix}-{next(self._counter)}" for _ in texts]
            for task_id, text in zip(ids, texts, strict=True):
                self._pending[task_id] = text
                self._holder[task_id] = None
            self._work_ready.notify(len(ids))
        return ids

    def collect(self, task_ids: Sequence[str], timeout: float) -> dict[str, str]:
        """Hand out the results of ``task_ids`` that are done, each only once.

        Waits up to ``timeout`` seconds for the first one when none is done yet.
        """
        with self._lock:
            done = self._take(task_ids)
            if done or timeout <= 0:
                return done
            ready = threading.Event()
            for task_id in task_ids:
                self._waiters.setdefault(task_id, []).append(ready)
        ready.wait(timeout)
        with self._lock:
            for task_id in task_ids:
                waiting = self._waiters.get(task_id, [])
                if ready in waiting:
                    waiting.remove(ready)
                if not waiting:
                    self._waiters.pop(task_id, None)
            return self._take(task_ids)

    def _take(self, task_ids: Sequence[str]) -> dict[str, str]:
        return {t: self._results.pop(t) for t in task_ids if t in self._results}

    def outstanding(self) -> int:
        """Tasks accepted and not done yet, queued or leased."""
        with self._lock:
            return len(self._holder)

    # -- workers ---------------------------------------------------------------------

    def register(self, worker_id: str) -> None:
        """A worker (re)starts: whatever a previous process with its id held is re-queued."""
        with self._lock:
            old = self._workers.pop(worker_id, None)
            if old is not None and old.tasks:
                log.warning(
                    "worker %s restarted; re-queuing its %d tasks", worker_id, len(old.tasks)
                )
                self._requeue(old)
            self._workers[worker_id] = _Worker(time.monotonic())
            if self._barrier.arrive(worker_id):
                self._work_ready.notify_all()

    def heartbeat(self, worker_id: str) -> None:
        """The worker is alive."""
        with self._lock:
            self._touch(worker_id)

    def exchange(
        self, worker_id: str, results: dict[str, str], max_tasks: int, wait: float
    ) -> list[tuple[str, str]]:
        """Record a worker's results, then lease it up to ``max_tasks`` new tasks.

        Waits up to ``wait`` seconds for work. A worker gets at most its fair share of
        the queue, so a batch does not starve the other workers.
        """
        deadline = time.monotonic() + wait
        with self._lock:
            self._complete(results)
            self._touch(worker_id)
            while not self._closing and (
                not self._pending or not self._barrier.arrive(worker_id)
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._work_ready.wait(remaining)
            worker = self._touch(worker_id)
            share = math.ceil(len(self._pending) / max(1, len(self._workers)))
            batch = []
            for _ in range(min(max_tasks, share)):
                task_id, text = self._pending.popitem(last=False)
                self._holder[task_id] = worker_id
                worker.tasks[task_id] = text
                batch.append((task_id, text))
            return batch

    def close(self) -> None:
        """The front is stopping: no pull waits for work any more, so workers stopping
        at the same time get their answer at once and can leave."""
        with self._lock:
            self._closing = True
            self._work_ready.notify_all()

    def leave(self, worker_id: str, results: dict[str, str]) -> None:
        """A worker stops cleanly: record its last results, re-queue anything left."""
        with self._lock:
            self._complete(results)
            worker = self._workers.pop(worker_id, None)
            if worker is not None and worker.tasks:
                self._requeue(worker)
            self._worker_left.notify_all()

    def wait_for_workers_to_leave(self, timeout: float) -> int:
        """Wait until every worker has left, or ``timeout``; returns how many are left."""
        with self._lock:
            self._worker_left.wait_for(lambda: not self._workers, timeout)
            return len(self._workers)

    def requeue_silent_workers(self) -> None:
        """Re-queue the tasks of every worker silent for longer than the lease timeout."""
        cutoff = time.monotonic() - self._lease_timeout
        with self._lock:
            silent = [wid for wid, worker in self._workers.items() if worker.last_seen < cutoff]
            for worker_id in silent:
                worker = self._workers.pop(worker_id)
                log.warning(
                    "worker %s was silent for %.0f s; re-queuing its %d tasks",
                    worker_id,
                    self._lease_timeout,
                    len(worker.tasks),
                )
                self._requeue(worker)
            if silent:
                self._worker_left.notify_all()

    # -- internals (lock held) -------------------------------------------------------

    def _touch(self, worker_id: str) -> _Worker:
        worker = self._workers.get(worker_id)
        if worker is None:
            # Unknown: first contact after the front restarted, or after being presumed dead.
            worker = self._workers[worker_id] = _Worker(time.monotonic())
        worker.last_seen = time.monotonic()
        return worker

    def _requeue(self, worker: _Worker) -> None:
        # At the head of the queue, in their original order: they have waited longest.
        for task_id, text in reversed(worker.tasks.items()):
            self._pending[task_id] = text
            self._pending.move_to_end(task_id, last=False)
            self._holder[task_id] = None
        self._work_ready.notify(len(worker.tasks))
        worker.tasks.clear()

    def _complete(self, results: dict[str, str]) -> None:
        for task_id, text in results.items():
            if task_id not in self._holder:
                continue  # done already: a duplicate from a worker presumed dead
            holder = self._holder.pop(task_id)
            if holder is None:
                del self._pending[task_id]
            else:
                self._workers[holder].tasks.pop(task_id, None)
            self._results[task_id] = text
            self._log.append(text)
            for ready in self._waiters.get(task_id, ()):
                ready.set()
        overflow = len(self._results) - self._max_uncollected
        if overflow > 0:
            log.warning("dropping %d uncollected results, the oldest", overflow)
            for _ in range(overflow):
                self._results.popitem(last=False)


# -- argument checks of the front's remote methods: ValueError names the problem ---------


def check_list(value: object, name: str) -> list[object]:
    """A list (or tuple) argument of at most :data:`MAX_BATCH` items."""
    if not isinstance(value, list | tuple):
        raise ValueError(f"{name} must be a list, got {type(value).__name__}")
    if len(value) > MAX_BATCH:
        raise ValueError(f"{name} has {len(value)} items, over the limit of {MAX_BATCH}")
    return list(value)


def check_id(value: object, name: str = "task id") -> str:
    """A task or worker id: a non-empty string of at most :data:`MAX_ID_CHARS`."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        raise ValueError(
            f"a {name} must be a non-empty string of at most {MAX_ID_CHARS} characters, "
            f"got {type(value).__name__}"
        )
    return value


def check_seconds(value: object, name: str) -> float:
    """A wait in seconds, from 0 to :data:`MAX_WAIT`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not 0 <= value <= MAX_WAIT:
        raise ValueError(f"{name} must be between 0 and {MAX_WAIT:g} seconds, got {value}")
    return float(value)


def check_count(value: object, name: str, maximum: int) -> int:
    """An integer from 1 to ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValueError(f"{name} must be an integer from 1 to {maximum}, got {value!r}")
    return value


def check_results(value: object) -> dict[str, str]:
    """A worker's results: a dict of task id to censored text."""
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("results must be a dict of task id to censored text")
    return value


# -- the front's remote methods ---------------------------------------------------------


class QueueFront:
    """The remote methods of a filter front, on any transport: client methods first,
    then the worker protocol (see docs/PROTOCOL.md).

    Every argument is checked here, so a bad request gets a ValueError naming the
    problem and never reaches the queue. A transport says, by overriding
    :meth:`_timed_out` and :meth:`_refused`, how a ``filter`` that got no result in
    time and a submission to a full queue reach its clients. No method returns None, so
    every reply is plain XML-RPC too.
    """

    #: The names a transport exposes: nothing else of this class is remote.
    REMOTE_METHODS = (
        "submit",
        "submit_many",
        "result",
        "wait_results",
        "filter",
        "get_results",
        "worker_register",
        "worker_heartbeat",
        "worker_exchange",
        "worker_leave",
    )

    def __init__(self, queue: TaskQueue, result_log: ResultLog, settings: Settings) -> None:
        self._queue = queue
        self._result_log = result_log
        self._limits: Limits = settings.limits
        self._default_timeout = min(settings.timeout, MAX_WAIT)

    def submit(self, text: object) -> str:
        """Queue one text; returns its task id."""
        return self._submit([self._text(text)])[0]

    def submit_many(self, texts: object) -> list[str]:
        """Queue several texts at once, all or none; returns their task ids in order."""
        checked = []
        for index, text in enumerate(check_list(texts, "texts")):
            try:
                checked.append(self._text(text))
            except ValueError as error:
                raise ValueError(f"texts[{index}]: {error}") from None
        return self._submit(checked)

    def result(self, task_id: object) -> str:
        """The censored text of a task, handed out once; "" while pending (or unknown)."""
        task_id = check_id(task_id)
        return self._queue.collect([task_id], 0).get(task_id, "")

    def wait_results(self, task_ids: object, timeout: object) -> dict[str, str]:
        """The censored texts of those of ``task_ids`` that are done, by id, each handed
        out once; blocks up to ``timeout`` seconds until at least one is."""
        ids = [check_id(task_id) for task_id in check_list(task_ids, "task_ids")]
        return self._queue.collect(ids, check_seconds(timeout, "timeout"))

    def filter(self, text: object, timeout: object = None) -> str:
        """Submit one text and wait for its censored form, in one round trip.

        After ``timeout`` seconds (default: the service's timeout) the error names the
        task id; the task stays queued and ``result(id)`` returns it later.
        """
        wait = self._default_timeout if timeout is None else check_seconds(timeout, "timeout")
        task_id = self.submit(text)
        done = self._queue.collect([task_id], wait)
        if task_id not in done:
            raise self._timed_out(f"task {task_id} got no result within {wait:g} s")
        return done[task_id]

    def get_results(self, limit: object = 100) -> list[str]:
        """Up to ``limit`` censored texts from the result list, newest first."""
        try:
            limit = validate_limit(limit, MAX_LIMIT)
        except InsultError as error:
            raise ValueError(str(error)) from None
        return self._result_log.newest(limit)

    def worker_register(self, worker_id: object) -> float:
        """Worker protocol: a worker starts; returns the heartbeat interval in seconds."""
        self._queue.register(check_id(worker_id, "worker id"))
        return HEARTBEAT_INTERVAL

    def worker_heartbeat(self, worker_id: object) -> bool:
        """Worker protocol: the worker is alive (call every heartbeat interval)."""
        self._queue.heartbeat(check_id(worker_id, "worker id"))
        return True

    def worker_exchange(
        self, worker_id: object, results: object, max_tasks: object, wait: object
    ) -> list[tuple[str, str]]:
        """Worker protocol: hand in results ``{id: text}``, get ``[(id, text), ...]`` back,
        waiting up to ``wait`` seconds (at most one heartbeat interval) for work."""
        return self._queue.exchange(
            check_id(worker_id, "worker id"),
            check_results(results),
            check_count(max_tasks, "max_tasks", MAX_BATCH),
            min(check_seconds(wait, "wait"), HEARTBEAT_INTERVAL),
        )

    def worker_leave(self, worker_id: object, results: object) -> bool:
        """Worker protocol: last results of a worker that stops; its other tasks go back."""
        self._queue.leave(check_id(worker_id, "worker id"), check_results(results))
        return True

    def _text(self, text: object) -> str:
        try:
            return validate_text(text, self._limits)
        except InsultError as error:
            # A builtin ValueError: serpent (Pyro4) cannot carry the domain's own type.
            raise ValueError(str(error)) from None

    def _timed_out(self, message: str) -> Exception:
        """The error a ``filter`` call that got no result in time raises."""
        return TimeoutError(message)

    def _refused(self, message: str) -> Exception:
        """The error a submission to a full queue raises."""
        return RuntimeError(message)

    def _submit(self, texts: list[str]) -> list[str]:
        try:
            return self._queue.submit(texts)
        except QueueFull as error:
            raise self._refused(str(error)) from None


def tend(queue: TaskQueue, stop: StopSignal) -> None:
    """A front's main loop: re-queue the tasks of silent workers until ``stop``, then give
    the workers (stopped by the launcher at the same time) :data:`WORKER_GRACE` seconds
    to hand in what they hold."""
    while not stop.wait(HEARTBEAT_INTERVAL):
        queue.requeue_silent_workers()
    queue.close()
    deadline = time.monotonic() + WORKER_GRACE
    while queue.wait_for_workers_to_leave(HEARTBEAT_INTERVAL):
        if time.monotonic() >= deadline:
            log.warning("some workers did not leave within %g s", WORKER_GRACE)
            break
        queue.requeue_silent_workers()
    if left := queue.outstanding():
        log.warning("stopping with %d accepted texts not filtered yet", left)


# -- the worker side -----------------------------------------------------------------


class FrontLink(Protocol):
    """A persistent connection to the front; raises MiddlewareError when a call fails."""

    def call(self, method: str, *args: Any, wait: float = 0.0) -> Any:
        """Call a remote method of the front; ``wait`` is how long it may block on purpose."""
        ...


class PullWorker:
    """Pulls, censors and hands back tasks until stopped: the body of a worker process.

    One pull (``worker_exchange``) hands in the results of the last batch and leases
    the next, so a busy worker costs one round trip per batch. ``heart`` is a second
    connection on which a thread heartbeats, so the front knows the worker lives even
    while it censors a long batch. ``fetch_insults`` returns the InsultService's list,
    or None when there is none (see :class:`RefreshingInsults`). ``served(n)``, if
    given, runs each time the front has accepted ``n`` results (a node's counter).
    """

    def __init__(
        self,
        settings: Settings,
        worker_id: str,
        stop: StopSignal,
        front: FrontLink,
        heart: FrontLink,
        fetch_insults: Callable[[], list[str] | None],
        served: Callable[[int], None] | None = None,
    ) -> None:
        self._settings = settings
        self._served = served
        self._worker_id = worker_id
        self._stop = stop
        self._front = front
        self._heart = heart
        self._insults = RefreshingInsults(fetch_insults, settings.insult_refresh)
        self._censor = Censor()

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
                    results,
                    WORKER_BATCH,
                    POLL_WAIT,
                    wait=POLL_WAIT,
                )
            except MiddlewareError as error:
                if self._stop.is_set():
                    break
                # The batch just leased may be lost in transit: registering again puts
                # it back in the queue. The results held are handed in again (the front
                # keeps a result once).
                log.warning("lost the front (%s); reconnecting", error)
                self._register(deadline=time.monotonic() + RECONNECT_WAIT)
                continue
            self._count_served(results)
            results = self._censor_all(tasks)
        try:
            self._front.call("worker_leave", self._worker_id, results)
            self._count_served(results)
        except MiddlewareError as error:
            log.warning("could not hand in %d results on leaving: %s", len(results), error)
        log.info("worker %s stopped", self._worker_id)

    def _count_served(self, results: dict[str, str]) -> None:
        if self._served is not None and results:
            self._served(len(results))

    def _censor_all(self, tasks: Sequence[Sequence[str]]) -> dict[str, str]:
        if not tasks:
            return {}
        insults = self._insults.current()
        results = {}
        for task_id, text in tasks:
            simulate_work(self._settings)
            results[task_id] = self._censor.censor(text, insults)
        return results

    def _register(self, deadline: float) -> float:
        """Register with the front, retrying until ``deadline``; returns the heartbeat."""
        while True:
            try:
                return float(self._front.call("worker_register", self._worker_id))
            except MiddlewareError:
                if time.monotonic() >= deadline or self._stop.is_set():
                    raise
            # The front starts alongside the workers, or is being restarted.
            self._stop.wait(0.2)

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self._heart.call("worker_heartbeat", self._worker_id)
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


@contextlib.contextmanager
def node_counter(settings: Settings, node: str | None) -> Iterator[Callable[[int], None] | None]:
    """The ``served`` of a worker: its node's counter in Redis; None outside the n-node form."""
    if node is None:
        yield None
        return
    client = redis_client(settings)
    try:
        counters = NodeCounters(client, settings.namespace, "filter", node, resume=True)
        try:
            yield counters.increment
        finally:
            counters.close()
    finally:
        client.close()


def serve_worker(
    settings: Settings,
    worker_id: str,
    node: str | None,
    connect_front: Callable[[], FrontLink],
    insults: InsultListReader,
) -> None:
    """The body of a worker process, until SIGINT or SIGTERM: a :class:`PullWorker` with
    two links to the front (pulls, heartbeats); ``node`` makes it a node of the n-node
    form, its worker id the node id and its served tasks counted in Redis. A front that
    stays unreachable ends it with one line on stderr and exit status 2."""
    stop = StopSignal()
    with node_counter(settings, node) as served:
        worker = PullWorker(
            settings,
            worker_id,
            stop,
            front=connect_front(),
            heart=connect_front(),
            fetch_insults=insults,
            served=served,
        )
        try:
            worker.run()
        except MiddlewareError as error:
            print(
                f"error: worker {worker_id} cannot reach the filter front: {error}",
                file=sys.stderr,
            )
            sys.exit(2)
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


# -- the client side -----------------------------------------------------------------


class FrontClient(FilterClient):
    """Client of a queue front (XML-RPC and Pyro4 filters): the same calls on either
    transport, given a :class:`FrontLink` that speaks it.

    ``chunk_chars`` bounds the text in one ``submit_many`` call, below the transport's
    message-size limit.
    """

    def __init__(self, front: FrontLink, settings: Settings, chunk_chars: int) -> None:
        self._remote = front
        self._settings = settings
        self._chunk_chars = chunk_chars

    def submit(self, text: str) -> str:
        return self._remote.call("submit", text)

    def submit_many(self, texts: Sequence[str]) -> list[str]:
        ids: list[str] = []
        for chunk in _chunks(texts, self._chunk_chars):
            ids += self._remote.call("submit_many", chunk)
        return ids

    def wait(self, task_ids: Sequence[str], timeout: float) -> dict[str, str]:
        ids = list(task_ids)
        if len(ids) <= MAX_BATCH:
            return self._wait_results(ids, timeout)
        # Too many ids for one call: look at all of them, then block on the oldest,
        # which the queue finishes first.
        done: dict[str, str] = {}
        for start in range(0, len(ids), MAX_BATCH):
            done.update(self._wait_results(ids[start : start + MAX_BATCH], 0))
        return done or self._wait_results(ids[:MAX_BATCH], timeout)

    def _wait_results(self, ids: list[str], timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            # The front blocks at most MAX_WAIT per call.
            wait = min(max(deadline - time.monotonic(), 0.0), MAX_WAIT)
            done = self._remote.call("wait_results", ids, wait, wait=wait)
            if done or wait < MAX_WAIT:
                return done

    def result(self, task_id: str) -> str | None:
        return self._remote.call("result", task_id) or None

    def filter(self, text: str, timeout: float | None = None) -> str:
        """Submit and wait in one round trip: the front blocks until the result is in."""
        wait = self.default_timeout if timeout is None else timeout
        if not 0 <= wait <= MAX_WAIT:
            return super().filter(text, timeout)
        return self._remote.call("filter", text, wait, wait=wait)

    def get_results(self, limit: int = 100) -> list[str]:
        return self._remote.call("get_results", limit)

    @property
    def default_timeout(self) -> float:
        return self._settings.timeout

    def close(self) -> None:
        self._remote.close()


def _chunks(texts: Sequence[str], max_chars: int) -> list[list[str]]:
    """Split texts into as few submit_many calls as the message-size limit allows."""
    chunks: list[list[str]] = [[]]
    size = 0
    for text in texts:
        length = len(text) if isinstance(text, str) else 1
        if chunks[-1] and (size + length > max_chars or len(chunks[-1]) >= MAX_BATCH):
            chunks.append([])
            size = 0
        chunks[-1].append(text)
        size += length
    return [chunk for chunk in chunks if chunk]
