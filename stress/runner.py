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
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from middlewares.contract import Backend, MiddlewareError
from middlewares.launch.deployment import node_counters
from middlewares.settings import Settings
from stress.histogram import encode, merge, summary_ms
from stress.loadgen import LIVE_SLOTS, ClientSpec, client_main
from stress.sampler import ResourceSampler, broker_pids, descendants
from stress.workload import Workload

log = logging.getLogger("stress")

#: A load-generating process this busy may be what limits the run.
LOADGEN_CPU_LIMIT_PCT = 90.0
#: Repeats whose throughputs differ by more than this fraction of their mean are suspect.
REPEAT_SPREAD_LIMIT = 0.10
#: An open loop that completes less than this share of its offered rate did not keep up.
RATE_SUSTAINED_SHARE = 0.95
#: Seconds between two progress updates and memory samples.
SAMPLE_INTERVAL_S = 0.5
#: Extra seconds, beyond the client timeout, a client process gets to hand in its report.
REPORT_GRACE_S = 15.0
#: How long clients get to start and connect.
READY_TIMEOUT_S = 60.0

#: Clients are forked from a clean server process that has the load generator imported,
#: which starts them much faster than ``spawn`` and without the hazards of a bare fork.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["stress.loadgen"])


class Deployed(Protocol):
    """What a run needs from a running deployment: the pids of its processes."""

    def worker_pids(self) -> list[int]:
        """Pids of the service's processes."""
        ...


#: Starts the service under test with the given settings, stops it on exit.
DeployFactory = Callable[[Settings], AbstractContextManager[Deployed]]
#: Called about twice a second: (seconds elapsed, seconds in all, live operations/s).
ProgressCallback = Callable[[float, float, float], None]


class RunFailed(RuntimeError):
    """The run could not be measured (a client could not connect, the service failed)."""


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
    """

    middleware: str
    workload: Workload
    clients: int
    repeat: int
    duration: float
    warmup: float
    nodes: int = 1

    def describe(self) -> str:
        """A one-line label for progress output."""
        nodes = f" nodes={self.nodes}" if self.nodes != 1 else ""
        return (
            f"{self.middleware} {self.workload.label} clients={self.clients}{nodes} "
            f"repeat={self.repeat}"
        )


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
) -> RunResult:
    """Deploy, load and measure one :class:`RunPlan`; raises :class:`RunFailed`.

    ``settings`` should come from :func:`isolated_settings`; the namespace's broker
    objects are deleted afterwards with ``backend.cleanup``.
    """
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        with deploy(settings) as deployment:
            outcome = _drive(plan, settings, deployment, backend_factory, progress)
        # Read after the deployment stopped, when every node has flushed its final count.
        counters = read_node_counters(settings, plan.workload.service)
        dead_letters = read_dead_letters(backend_factory, settings)
    finally:
        with _ignoring_ctrl_c():
            _cleanup(backend_factory, settings)
    row, detail = _summarise(plan, settings, outcome, dead_letters)
    row["started_at"] = started_at
    detail["node_counters"] = counters
    return RunResult(row, detail)


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


@dataclass
class _Outcome:
    reports: list[dict[str, Any]]
    lost: list[int]
    usage: dict[str, Any]
    machine_cpu_pct: float


def _drive(
    plan: RunPlan,
    settings: Settings,
    deployment: Deployed,
    backend_factory: Callable[[], Backend],
    progress: ProgressCallback | None,
) -> _Outcome:
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
        schedule[:] = [start, start + plan.warmup, start + plan.warmup + plan.duration]
        go.set()
        sampler = ResourceSampler(
            {
                "service": lambda: descendants(deployment.worker_pids()),
                "clients": lambda: [p.pid for p in processes if p.pid is not None],
                "redis": lambda: broker_pids("redis"),
                "rabbitmq": lambda: broker_pids("rabbitmq"),
            }
        )
        _watch(schedule[:], sampler, live, plan.clients, progress)
        usage, machine = sampler.end()
        deadline = schedule[2] + settings.timeout + REPORT_GRACE_S
        _collect(plan.clients, reports, deadline, collected)
        lost = sorted(set(range(plan.clients)) - set(collected))
        return _Outcome(
            reports=[collected[i] for i in sorted(collected)],
            lost=lost,
            usage=usage,
            machine_cpu_pct=machine,
        )
    finally:
        with _ignoring_ctrl_c():
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
) -> None:
    """Sleep through the run, starting the sampler at the end of warm-up."""
    start, warm_end, end = schedule
    total = end - start
    begun = False
    last_count, last_time = 0, time.monotonic()
    while (now := time.monotonic()) < end:
        if not begun and now >= warm_end:
            sampler.begin()
            begun = True
        elif begun:
            sampler.sample()
        count = sum(live[i * LIVE_SLOTS] for i in range(clients))
        rate = (count - last_count) / max(1e-9, now - last_time)
        last_count, last_time = count, now
        if progress is not None:
            progress(max(0.0, now - start), total, rate)
        next_stop = warm_end if not begun else end
        time.sleep(max(0.0, min(SAMPLE_INTERVAL_S, next_stop - time.monotonic())))
    if not begun:
        sampler.begin()
    if progress is not None:
        progress(total, total, 0.0)


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


@contextlib.contextmanager
def _ignoring_ctrl_c() -> Iterator[None]:
    """Let clean-up finish even if Ctrl-C is pressed again meanwhile."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _summarise(
    plan: RunPlan, settings: Settings, outcome: _Outcome, dead_letters: dict[str, int]
) -> tuple[dict[str, Any], dict[str, Any]]:
    reports = [r for r in outcome.reports if "fatal" not in r]
    fatal = [f"client {r['index']}: {r['fatal']}" for r in outcome.reports if "fatal" in r]

    def total(key: str) -> int:
        return sum(r[key] for r in reports)

    histogram = merge(r["histogram"] for r in reports)
    usage = outcome.usage
    row: dict[str, Any] = {
        "middleware": plan.middleware,
        "service": plan.workload.service,
        "mode": plan.workload.mode,
        "loop": plan.workload.loop,
        "window": plan.workload.window,
        "rate": plan.workload.rate,
        "clients": plan.clients,
        "nodes": plan.nodes,
        "repeat": plan.repeat,
        "work_ms": settings.work_ms,
        "work_kind": settings.work_kind,
        "duration_s": plan.duration,
        "warmup_s": plan.warmup,
        "sent": total("sent"),
        "completed": total("completed"),
        "errors": total("errors"),
        "timeouts": total("timeouts"),
        "unconfirmed": total("sent_total") - total("confirmed_total"),
        "dead_lettered": sum(dead_letters.values()),
        "throughput_ops_s": round(total("completed") / plan.duration, 1),
        **{key: round(value, 3) for key, value in summary_ms(histogram).items()},
        "service_cpu_pct": usage["service"].cpu_pct,
        "service_cpu_max_pct": usage["service"].cpu_max_pct,
        "service_rss_mb": usage["service"].rss_mb,
        "redis_cpu_pct": usage["redis"].cpu_pct,
        "rabbitmq_cpu_pct": usage["rabbitmq"].cpu_pct,
        "loadgen_cpu_pct": usage["clients"].cpu_pct,
        "loadgen_cpu_max_pct": usage["clients"].cpu_max_pct,
        "machine_cpu_pct": outcome.machine_cpu_pct,
        "namespace": settings.namespace,
    }
    flags = run_flags(row, outcome.lost, fatal)
    row["trusted"] = not flags
    row["flags"] = ";".join(flags)
    detail = {
        "histogram": encode(histogram),
        "processes": {
            group: [vars(p) for p in group_usage.processes]
            for group, group_usage in usage.items()
            if group in ("service", "clients")
        },
        "error_samples": sorted({e for r in reports for e in r["error_samples"]})[:10] + fatal,
        "clients": [
            {k: r[k] for k in ("index", "pid", "sent", "completed", "errors", "timeouts")}
            for r in reports
        ],
        "settings": settings.as_dict(),
        "dead_letters": dead_letters,
    }
    return row, detail


def run_flags(row: dict[str, Any], lost: list[int], fatal: list[str]) -> list[str]:
    """Why a run's figures should not be trusted; empty when there is no reason."""
    flags = []
    if lost:
        flags.append(f"clients-lost={len(lost)}")
    if fatal:
        flags.append(f"clients-failed={len(fatal)}")
    if row["loadgen_cpu_max_pct"] >= LOADGEN_CPU_LIMIT_PCT:
        flags.append(f"loadgen-cpu={row['loadgen_cpu_max_pct']:.0f}%")
    if row["unconfirmed"]:
        flags.append(f"unconfirmed={row['unconfirmed']}")
    if row.get("dead_lettered"):
        flags.append(f"dead-lettered={row['dead_lettered']}")
    if row["completed"] == 0:
        flags.append("nothing-completed")
    if row["rate"] and row["throughput_ops_s"] < RATE_SUSTAINED_SHARE * row["rate"]:
        flags.append("rate-not-sustained")
    return flags


def flag_repeat_spread(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    """Flag every row whose group of repeats (same ``keys``) varies by more than 10%.

    The spread is (max - min) / mean of the throughputs; it is stored in
    ``repeat_spread`` on every row so tables and plots can show it.
    """
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    for group in groups.values():
        rates = [r["throughput_ops_s"] for r in group]
        mean = sum(rates) / len(rates)
        spread = (max(rates) - min(rates)) / mean if mean > 0 else 0.0
        for row in group:
            row["repeat_spread"] = round(spread, 3)
            if len(group) > 1 and spread > REPEAT_SPREAD_LIMIT:
                flags = [f for f in row["flags"].split(";") if f and not f.startswith("repeat-")]
                row["flags"] = ";".join([*flags, f"repeat-spread={100 * spread:.0f}%"])
                row["trusted"] = False
