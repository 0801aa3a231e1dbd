"""One measured run: deploy a service, drive it with N client processes, collect.

:func:`run_once` is the single piece of measurement code behind ``python -m stress`` and
``python -m speedup``. It starts the deployment in a namespace of its own, starts the
client processes, waits until every one is connected, gives them one shared schedule
(start, end of warm-up, end), samples CPU and memory during the window, merges the
clients' histograms and returns one tidy row plus the details. Whatever happens (an
error, Ctrl-C), every client process and the deployment are stopped and the namespace's
broker objects are deleted.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from middlewares.contract import Backend, MiddlewareError
from middlewares.launch.deployment import node_counters
from middlewares.launch.processes import ignoring_ctrl_c
from middlewares.settings import Settings
from stress.loadgen import LIVE_SLOTS, ClientSpec, client_main
from stress.plan import RunPlan
from stress.rows import Collected, summarise_run
from stress.sampler import ResourceSampler, broker_pids, descendants

log = logging.getLogger("stress")

#: Seconds between two progress updates and memory samples.
SAMPLE_INTERVAL_S = 0.5
#: Extra seconds, beyond the client timeout, a client process gets to hand in its report.
REPORT_GRACE_S = 15.0
#: How long clients get to start and connect.
READY_TIMEOUT_S = 60.0
#: Fixed work that takes longer than this is stopped and flagged as unfinished.
FIXED_WORK_LIMIT_S = 300.0

#: Clients are forked from a clean server process that has the load generator imported,
#: which starts them much faster than ``spawn`` and without the hazards of a bare fork.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["stress.loadgen"])


class Deployed(Protocol):
    """What a run needs from a running deployment: the pids of its processes."""

    def worker_pids(self) -> list[int]:
        """Pids of the service's processes."""
        ...

    def node_pids(self) -> list[int]:
        """Pids of the service's node processes (those started with ``--node-id``)."""
        ...


#: Starts the service under test with the given settings, stops it on exit.
DeployFactory = Callable[[Settings], AbstractContextManager[Deployed]]
#: Called about twice a second: (seconds elapsed, seconds in all, live operations/s,
#: failed operations so far).
ProgressCallback = Callable[[float, float, float, int], None]


class RunFailed(RuntimeError):
    """The run could not be measured (a client could not connect, the service failed)."""


@dataclass
class RunResult:
    """One measured run.

    Attributes:
        row: The tidy CSV row (see ``results.files.STRESS_COLUMNS``).
        detail: What the CSV cannot hold: the merged histogram (encoded), every process's
            CPU and memory, error messages, per-client counts.
    """

    row: dict[str, Any]
    detail: dict[str, Any]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolated_settings(base: Settings, study: str) -> Settings:
    """``base`` with a namespace and ports no other run uses, e.g. ``insultbench-stress-1a2b``."""
    return base.with_changes(
        namespace=f"{base.namespace}-{study}-{uuid.uuid4().hex[:8]}",
        insult_port=free_port(),
        filter_port=free_port(),
        echo_port=free_port(),
        pyro_ns_port=free_port(),
    )


def run_once(
    plan: RunPlan,
    settings: Settings,
    deploy: DeployFactory,
    backend_factory: Callable[[], Backend],
    progress: ProgressCallback | None = None,
    cleanup: bool = True,
) -> RunResult:
    """Deploy, load and measure one :class:`RunPlan`; raises :class:`RunFailed`.

    ``settings`` should come from :func:`isolated_settings`; the namespace's broker
    objects are deleted afterwards with ``backend.cleanup`` (unless ``cleanup`` is
    False: a deployment that is not the run's own, see :mod:`stress.external`).
    In the n-node form the run records the live nodes (id and host) and what each
    served during the run.
    """
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    service = plan.workload.service
    before: dict[str, int] = {}
    nodes: list[dict[str, str]] = []
    try:
        with deploy(settings) as deployment:
            if plan.node_form:
                before = read_node_counters(settings, service)
                nodes = read_live_nodes(backend_factory, settings, service)
            outcome = _drive(plan, settings, deployment, backend_factory, progress)
        # Read after the deployment stopped, when every node has flushed its final count.
        counters = read_node_counters(settings, service)
        dead_letters = read_dead_letters(backend_factory, settings)
    finally:
        if cleanup:
            with ignoring_ctrl_c():
                _cleanup(backend_factory, settings)
    row, detail = summarise_run(plan, settings, outcome, dead_letters)
    row["started_at"] = started_at
    row["node_hosts"] = " ".join(f"{node['id']}@{node['host']}" for node in nodes)
    detail["nodes"] = nodes
    detail["node_counters"] = {
        node: count - before.get(node, 0) for node, count in counters.items()
    }
    return RunResult(row, detail)


def read_live_nodes(
    backend_factory: Callable[[], Backend], settings: Settings, service: str
) -> list[dict[str, str]]:
    """The live nodes of the run's deployment, id and host; empty when it cannot say."""
    try:
        return [asdict(node) for node in backend_factory().live_nodes(service, settings)]
    except MiddlewareError as error:
        log.warning("could not read the live nodes: %s", error)
        return []


def read_dead_letters(backend_factory: Callable[[], Backend], settings: Settings) -> dict[str, int]:
    """Messages the run's queues set aside for crashing or hanging their consumers, by
    dead-letter list or queue; empty when the backend has none or cannot say."""
    try:
        return backend_factory().dead_letters(settings)
    except MiddlewareError as error:
        log.warning("could not read the dead-letter counts: %s", error)
        return {}


def read_node_counters(settings: Settings, service: str) -> dict[str, int]:
    """Requests or tasks each node served, as the n-node form publishes them in Redis
    (warm-up included); empty when the deployment publishes none."""
    try:
        return node_counters(settings, service)
    except MiddlewareError as error:
        log.warning("could not read the node counters: %s", error)
        return {}


def _drive(
    plan: RunPlan,
    settings: Settings,
    deployment: Deployed,
    backend_factory: Callable[[], Backend],
    progress: ProgressCallback | None,
) -> Collected:
    reports = _CONTEXT.Queue()
    go = _CONTEXT.Event()
    stop = _CONTEXT.Event()
    schedule = _CONTEXT.Array("d", 3, lock=False)
    live = _CONTEXT.Array("q", plan.clients * LIVE_SLOTS, lock=False)
    processes = []
    try:
        for index in range(plan.clients):
            spec = ClientSpec(
                index=index,
                clients=plan.clients,
                backend_factory=backend_factory,
                settings=settings,
                workload=plan.workload,
                seed=plan.repeat * 1000 + index,
            )
            process = _CONTEXT.Process(
                target=client_main,
                args=(spec, reports, go, schedule, live, stop, READY_TIMEOUT_S),
                name=f"stress-client-{index}",
            )
            process.start()
            processes.append(process)
        collected: dict[int, dict[str, Any]] = {}
        _wait_ready(plan.clients, reports, processes, collected)
        start = time.monotonic() + 0.05
        window = FIXED_WORK_LIMIT_S if plan.workload.tasks else plan.duration
        schedule[:] = [start, start + plan.warmup, start + plan.warmup + window]
        go.set()
        brokers = backend_factory().broker_processes(plan.workload.service, plan.node_form)
        sampler = ResourceSampler(
            {
                "service": lambda: descendants(deployment.worker_pids()),
                "nodes": lambda: descendants(deployment.node_pids()),
                "clients": lambda: [p.pid for p in processes if p.pid is not None],
                "brokers": lambda: broker_pids(brokers),
            }
        )
        _watch(schedule[:], sampler, live, plan.clients, progress, bool(plan.workload.tasks))
        usage, machine = sampler.end()
        deadline = schedule[2] + settings.timeout + REPORT_GRACE_S
        _collect(plan.clients, reports, deadline, collected)
        lost = sorted(set(range(plan.clients)) - set(collected))
        return Collected(
            reports=[collected[i] for i in sorted(collected)],
            lost=lost,
            usage=usage,
            machine_cpu_pct=machine,
        )
    finally:
        with ignoring_ctrl_c():
            _stop_clients(processes, stop, reports)


def _wait_ready(
    clients: int,
    reports: Any,
    processes: list[Any],
    collected: dict[int, dict[str, Any]],
) -> None:
    """Wait until every client is connected; a client that fails first fails the run."""
    ready: set[int] = set()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while len(ready) < clients:
        kind, payload = _next_report(reports, deadline)
        if kind is None:
            dead = [p.name for p in processes if not p.is_alive()]
            raise RunFailed(
                f"only {len(ready)} of {clients} clients connected within "
                f"{READY_TIMEOUT_S:.0f} s" + (f" ({', '.join(dead)} died)" if dead else "")
            )
        if kind == "ready":
            ready.add(payload)
        else:
            collected[payload["index"]] = payload
            raise RunFailed(f"client {payload['index']} failed: {payload.get('fatal')}")


def _next_report(reports: Any, deadline: float) -> tuple[str | None, Any]:
    try:
        return reports.get(timeout=max(0.01, deadline - time.monotonic()))
    except queue.Empty:
        return None, None


def _watch(
    schedule: list[float],
    sampler: ResourceSampler,
    live: Any,
    clients: int,
    progress: ProgressCallback | None,
    fixed_work: bool = False,
) -> None:
    """Sleep through the run, starting the sampler at the end of warm-up; with fixed
    work, only until every client has done its share."""
    start, warm_end, end = schedule
    total = end - start
    begun = False
    last_count, last_time = 0, time.monotonic()

    def finished() -> bool:
        return fixed_work and all(live[i * LIVE_SLOTS + 2] for i in range(clients))

    while (now := time.monotonic()) < end and not finished():
        if not begun and now >= warm_end:
            sampler.begin()
            begun = True
        elif begun:
            sampler.sample()
        count = sum(live[i * LIVE_SLOTS] for i in range(clients))
        errors = sum(live[i * LIVE_SLOTS + 1] for i in range(clients))
        # Fixed work restarts each client's count after the warm-up: never show a dip.
        rate = max(0.0, count - last_count) / max(1e-9, now - last_time)
        last_count, last_time = count, now
        if progress is not None:
            progress(max(0.0, now - start), total, rate, errors)
        next_stop = warm_end if not begun else end
        # Fixed work ends when the clients say so: look more often than we sample.
        interval = SAMPLE_INTERVAL_S / 10 if fixed_work and begun else SAMPLE_INTERVAL_S
        time.sleep(max(0.0, min(interval, next_stop - time.monotonic())))
    if not begun:
        sampler.begin()
    if progress is not None:
        done = time.monotonic() - start if fixed_work else total
        progress(done, done, 0.0, sum(live[i * LIVE_SLOTS + 1] for i in range(clients)))


def _collect(
    clients: int, reports: Any, deadline: float, collected: dict[int, dict[str, Any]]
) -> None:
    """Gather the clients' final reports until all are in or the deadline passes."""
    while len(collected) < clients:
        kind, payload = _next_report(reports, deadline)
        if kind is None:
            return
        if kind == "report":
            collected[payload["index"]] = payload


def _stop_clients(processes: list[Any], stop: Any, reports: Any) -> None:
    """Ask the clients to stop, then terminate and finally kill any that remain."""
    stop.set()
    deadline = time.monotonic() + 5.0
    for process in processes:
        # Reading leftovers keeps a client from blocking on a full pipe at exit.
        while process.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                reports.get(timeout=0.05)
            process.join(0.05)
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(2.0)
        if process.is_alive():
            process.kill()
            process.join()
    reports.close()
    reports.join_thread()


def _cleanup(backend_factory: Callable[[], Backend], settings: Settings) -> None:
    try:
        backend_factory().cleanup(settings)
    except Exception as error:  # the run's own outcome matters more than tidying up
        log.warning("could not clean up namespace %s: %s", settings.namespace, error)
