"""The load generator: what one client process does during a run.

Each client process opens ONE client (one persistent connection) through the backend,
says it is ready, waits for the shared schedule, and then issues operations until the
end of the measurement window. It counts an operation as completed only when the
service's reply arrived and was the right one; latencies go into the process's own HDR
histogram, which is sent back encoded and merged by the coordinator.

The schedule is three ``time.monotonic()`` instants (start, end of warm-up, end), which
every process on the machine reads from the same clock.

In fixed-work mode (``workload.tasks``) each client does its share of the operations
after the warm-up, as fast as the service allows, and reports when it sent the first
and when it got the last confirmed reply; ``end`` is then only a deadline.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any

from middlewares.contract import Backend, FilterClient
from middlewares.settings import Settings
from results.histogram import encode
from stress.tally import Tally
from stress.workload import Workload, add_pool, echo_payload, expected_censored

#: How often a client publishes its live counters and looks for a stop request.
TICK_S = 0.1
#: Pause after a failed operation, so a broken connection does not become a busy loop.
ERROR_BACKOFF_S = 0.01
#: Slots per client in the live counter array: completed, failed, finished (fixed work).
LIVE_SLOTS = 3


@dataclass(frozen=True)
class ClientSpec:
    """Everything a client process needs; pickled into the process when it starts.

    Attributes:
        index: Number of this client in the run, from 0.
        clients: How many clients the run has (each gets ``rate / clients`` in open loop).
        backend_factory: Returns the backend to use; a module-level callable, so that it
            pickles (``functools.partial(get_backend, "redis")`` for a real middleware).
        settings: Settings of the deployment under test.
        workload: What to send.
        seed: Seed of this client's random choices, so a run can be repeated exactly.
    """

    index: int
    clients: int
    backend_factory: Callable[[], Backend]
    settings: Settings
    workload: Workload
    seed: int


def operation_stream(
    workload: Workload, client: Any, rng: random.Random
) -> Iterator[Callable[[], bool]]:
    """An endless stream of operations on ``client``; each returns True for a right reply.

    For the InsultService the right reply is one of the right type (the values depend on
    the store); for the filter and the echo it is the exact expected text.
    """
    words = workload.payload_words
    if workload.service == "echo":
        payload = echo_payload(words)
        return itertools.repeat(lambda: client.echo(payload) == payload)
    if workload.service == "filter":
        expected = expected_censored(words)
        texts = list(expected)
        rng.shuffle(texts)
        return (
            (lambda text=text: client.filter(text) == expected[text])
            for text in itertools.cycle(texts)
        )
    pool = add_pool(words)
    adds = itertools.cycle(rng.sample(pool, len(pool)))
    calls: dict[str, Callable[[], bool]] = {
        "random_insult": lambda: isinstance(client.random_insult(), str),
        "add_insult": lambda: isinstance(client.add_insult(next(adds)), bool),
        "get_insults": lambda: isinstance(client.get_insults(), list),
    }
    names = [name for name, _ in workload.mix]
    weights = [weight for _, weight in workload.mix]
    # A long pre-drawn sequence keeps the mix exact and costs nothing per operation.
    drawn = rng.choices(names, weights=weights, k=1000)
    return itertools.cycle([calls[name] for name in drawn])


class _Live:
    """This client's slots in the shared counter array, read by the progress display."""

    def __init__(self, array: SynchronizedArray, index: int) -> None:
        self._array = array
        self._base = index * LIVE_SLOTS

    def publish(self, tally: Tally) -> None:
        # One writer per slot, so no lock is needed; a reader may see a value one tick old.
        self._array[self._base] = tally.confirmed_total
        self._array[self._base + 1] = tally.failed_total

    def finish(self) -> None:
        """Say this client has done its share of a fixed amount of work."""
        self._array[self._base + 2] = 1


def run_sync(
    next_operation: Iterator[Callable[[], bool]],
    tally: Tally,
    start: float,
    rate_per_client: float,
    should_stop: Callable[[], bool],
    live: _Live,
    limit: int = 0,
) -> None:
    """One operation at a time until the window ends, then finish the one in flight;
    with a ``limit``, stop as well once that many operations were sent.

    In an open loop, operation ``k`` is due at ``start + k / rate``; its latency counts
    from that intended instant, so a service that falls behind is charged for the time
    requests waited to be sent (no coordinated omission).
    """
    interval = 1 / rate_per_client if rate_per_client else 0.0
    next_due = start
    next_tick = 0.0
    while True:
        now = time.monotonic()
        if now >= next_tick:
            live.publish(tally)
            if should_stop():
                return
            next_tick = now + TICK_S
        if limit and tally.sent_total >= limit:
            return
        if interval:
            if next_due >= tally.end:
                return
            if now < next_due:
                time.sleep(next_due - now)
            started = next_due
            next_due += interval
        else:
            if now >= tally.end:
                return
            started = now
        operation = next(next_operation)
        tally.issued(started)
        try:
            right = operation()
        except Exception as error:  # every failure is counted, none ends the run
            tally.failed(time.monotonic(), error)
            time.sleep(ERROR_BACKOFF_S)
            continue
        done = time.monotonic()
        if right:
            tally.confirmed(started, done)
        else:
            tally.failed(done, "wrong reply")


def run_pipelined(
    workload: Workload,
    client: FilterClient,
    rng: random.Random,
    tally: Tally,
    start: float,
    rate_per_client: float,
    timeout: float,
    should_stop: Callable[[], bool],
    live: _Live,
    limit: int = 0,
) -> None:
    """Keep up to ``window`` filter tasks in flight until the window ends (or, with a
    ``limit``, until that many were sent), then drain.

    New tasks go out in one ``submit_many`` call per batch; ``wait`` returns as soon as
    any pending task is done. A task without a result after ``timeout`` seconds counts
    as timed out. In an open loop, tasks are due at a fixed rate and those that could not
    be sent because the window was full wait, with their latency running.
    """
    expected = expected_censored(workload.payload_words)
    texts = itertools.cycle(rng.sample(list(expected), len(expected)))
    interval = 1 / rate_per_client if rate_per_client else 0.0
    next_due = start
    pending: dict[str, tuple[float, str]] = {}
    drain_deadline = tally.end + timeout
    next_tick = 0.0
    while True:
        now = time.monotonic()
        if now >= next_tick:
            live.publish(tally)
            if should_stop():
                return
            _expire(pending, now - timeout, tally, now)
            next_tick = now + TICK_S
        sending = now < tally.end and not (limit and tally.sent_total >= limit)
        if not sending and (not pending or now >= drain_deadline):
            break
        batch: list[tuple[float, str]] = []
        free = workload.window - len(pending) if sending else 0
        if limit:
            free = min(free, limit - tally.sent_total)
        if interval:
            while len(batch) < free and next_due <= now and next_due < tally.end:
                batch.append((next_due, next(texts)))
                next_due += interval
        else:
            batch = [(now, next(texts)) for _ in range(free)]
        if batch:
            tally.issued(now, len(batch))
            try:
                ids = client.submit_many([text for _, text in batch])
            except Exception as error:
                tally.failed(time.monotonic(), error, len(batch))
                time.sleep(ERROR_BACKOFF_S)
                continue
            for task_id, (started, text) in zip(ids, batch, strict=True):
                pending[task_id] = (started, expected[text])
        if not pending:
            # Open loop, ahead of schedule: sleep until the next task is due.
            time.sleep(max(0.0, min(next_due, tally.end) - time.monotonic()))
            continue
        # With room in the window, an open loop must wake when the next task is due.
        room = len(pending) < workload.window
        wait_for = max(0.0, min(TICK_S, next_due - now)) if interval and room else TICK_S
        try:
            results = client.wait(list(pending), wait_for)
        except Exception as error:
            # The tasks are still pending: they time out unless a later wait finds them.
            tally.note(error)
            time.sleep(ERROR_BACKOFF_S)
            continue
        done = time.monotonic()
        for task_id, text in results.items():
            started, wanted = pending.pop(task_id)
            if text == wanted:
                tally.confirmed(started, done)
            else:
                tally.failed(done, "wrong reply")
    # What is still pending after the drain deadline was never confirmed.
    _expire(pending, float("inf"), tally, time.monotonic())
    live.publish(tally)


def _expire(
    pending: dict[str, tuple[float, str]], older_than: float, tally: Tally, now: float
) -> None:
    """Count the tasks sent before ``older_than`` as timed out and forget them."""
    for task_id in [t for t, (started, _) in pending.items() if started < older_than]:
        del pending[task_id]
        tally.failed(now, TimeoutError(f"task {task_id} got no result in time"))


def open_client(backend: Backend, service: str, settings: Settings) -> AbstractContextManager[Any]:
    """The client of ``service``, connected once and kept for the whole run."""
    if service == "insult":
        return backend.insult_client(settings)
    if service == "filter":
        return backend.filter_client(settings)
    return backend.echo_client(settings)


def client_main(
    spec: ClientSpec,
    reports: Any,
    go: Any,
    schedule: SynchronizedArray,
    live_array: SynchronizedArray,
    stop: Any,
    ready_timeout: float,
) -> None:
    """Entry point of a client process: connect, report ready, run, report the tally.

    Ctrl-C is ignored here: the coordinator gets it and stops the clients through
    ``stop``, so every client still reports what it measured.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    report: dict[str, Any] = {"index": spec.index, "pid": os.getpid()}
    try:
        with open_client(spec.backend_factory(), spec.workload.service, spec.settings) as client:
            reports.put(("ready", spec.index))
            if not go.wait(ready_timeout) or stop.is_set():
                raise RuntimeError("the run was called off before it started")
            report.update(_measure(spec, client, schedule, live_array, stop))
    except Exception as error:
        report["fatal"] = f"{type(error).__name__}: {error}"
    reports.put(("report", report))
    # Stay alive until the coordinator has read this process's CPU time and says stop.
    stop.wait(ready_timeout)


def share_of(tasks: int, clients: int, index: int) -> int:
    """Client ``index``'s part of ``tasks`` operations split as evenly as possible."""
    return tasks // clients + (1 if index < tasks % clients else 0)


def _measure(
    spec: ClientSpec,
    client: Any,
    schedule: SynchronizedArray,
    live_array: SynchronizedArray,
    stop: Any,
) -> dict[str, Any]:
    start, warm_end, end = schedule[:]
    workload = spec.workload
    rng = random.Random(spec.seed)
    rate = workload.rate / spec.clients
    live = _Live(live_array, spec.index)
    stream = operation_stream(workload, client, rng) if workload.mode == "sync" else None

    def run(tally: Tally, begin: float, limit: int = 0) -> None:
        if stream is None:
            timeout = spec.settings.timeout
            run_pipelined(
                workload, client, rng, tally, begin, rate, timeout, stop.is_set, live, limit
            )
        else:
            run_sync(stream, tally, begin, rate, stop.is_set, live, limit)

    # Clients start at the same instant; the warm-up absorbs the first connections' cost.
    time.sleep(max(0.0, start - time.monotonic()))
    if not workload.tasks:
        tally = Tally(warm_end=warm_end, end=end)
        run(tally, start)
        return _report(tally)
    # Fixed work: warm up and drain what is in flight, then send this client's share as
    # fast as the service allows, counting only those operations.
    warm = Tally(warm_end=warm_end, end=warm_end)
    if warm_end > start:
        run(warm, start)
    begin = time.monotonic()
    tally = Tally(warm_end=begin, end=end)
    run(tally, begin, share_of(workload.tasks, spec.clients, spec.index))
    live.finish()
    report = _report(tally)
    for key in ("sent_total", "confirmed_total", "failed_total"):
        report[key] += getattr(warm, key)
    return report


def _report(tally: Tally) -> dict[str, Any]:
    def instant(value: float) -> float | None:
        return value if math.isfinite(value) else None

    return {
        "sent": tally.sent,
        "completed": tally.completed,
        "errors": tally.errors,
        "timeouts": tally.timeouts,
        "sent_total": tally.sent_total,
        "confirmed_total": tally.confirmed_total,
        "failed_total": tally.failed_total,
        "error_samples": tally.error_samples,
        "histogram": encode(tally.histogram),
        "first_issued": instant(tally.first_issued),
        "last_confirmed": instant(tally.last_confirmed),
    }
