"""The delivery guarantee, as docs/PROTOCOL.md ("Delivery guarantees") states it, on the
middlewares whose at-most-once form lives outside RabbitMQ's adapter: a filter worker
SIGKILLed mid-stream.

- at-least-once: no accepted task is lost, none is answered twice;
- at-most-once: what is lost is what the killed worker held, and no more (Redis: at most
  its prefetch; XML-RPC and Pyro4: exactly the tasks the front says it dropped with it),
  and still none is answered twice.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator

import psutil
import pytest

from middlewares.contract import Backend, FilterClient
from middlewares.launch.deployment import Deployment
from middlewares.redis.transport import prefetch_for
from middlewares.settings import Settings
from tests.helpers import Deploy, each_in_turn, wait_for

#: The middlewares whose guarantee this file checks (RabbitMQ's is tested with its adapter).
GUARANTEED = ("redis", "xmlrpc", "pyro")

TOTAL = 2000

#: Seconds without a new result after which an at-most-once stream is over: well past the
#: three missed heartbeats after which a direct front gives up on a silent worker.
QUIET = 5.0


@pytest.fixture(params=GUARANTEED)
def middleware(request: pytest.FixtureRequest, settings: Settings) -> Iterator[str]:
    """Each of :data:`GUARANTEED` in turn; its namespace is cleaned up afterwards."""
    yield from each_in_turn(request.param, settings)


def _worker_pids(deployment: Deployment) -> list[int]:
    # Every backend runs its workers as ``python -m middlewares.<name>.filter_worker``.
    return [
        pid
        for pid in deployment.worker_pids()
        if "filter_worker" in " ".join(psutil.Process(pid).cmdline())
    ]


#: What each filter worker logs once it takes tasks, by middleware.
WORKING = {"redis": "censoring tasks from", "xmlrpc": "pulling tasks", "pyro": "pulling tasks"}


def _wait_until_both_workers_work(deployment: Deployment, middleware: str) -> None:
    """The launcher is ready once the service answers, maybe before a slow worker has
    started: a worker killed then held nothing, and the test would prove nothing."""
    assert wait_for(lambda: deployment.log_tail(200).count(WORKING[middleware]) >= 2, 60)


def _stream_with_a_kill(
    client: FilterClient, deployment: Deployment, lossy: bool
) -> tuple[list[str], dict[str, str]]:
    """Submit :data:`TOTAL` tasks, SIGKILL one worker once results flow, and collect
    until all are done (or, ``lossy``, until no result came for :data:`QUIET` s)."""
    texts = [f"task {n} tonto" for n in range(TOTAL)]
    ids: list[str] = []
    for start in range(0, TOTAL, 200):
        ids += client.submit_many(texts[start : start + 200])
    done: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while not done and time.monotonic() < deadline:
        done.update(client.wait(ids, timeout=1.0))
    assert 0 < len(done) < TOTAL / 2, "the kill must land mid-stream"
    os.kill(_worker_pids(deployment)[0], signal.SIGKILL)
    deadline = time.monotonic() + 90
    last_progress = time.monotonic()
    while len(done) < TOTAL and time.monotonic() < deadline:
        if lossy and time.monotonic() - last_progress > QUIET:
            break
        fresh = client.wait([i for i in ids if i not in done], timeout=1.0)
        if fresh:
            last_progress = time.monotonic()
        done.update(fresh)
    return ids, done


def _check_answered_once(client: FilterClient, ids: list[str], done: dict[str, str]) -> None:
    """Every answer is the right one, and the result list holds none twice."""
    expected = {i: f"task {n} CENSORED" for n, i in enumerate(ids)}
    assert all(done[i] == expected[i] for i in done)
    # The launcher's readiness probes leave results of their own.
    listed = Counter(r for r in client.get_results(TOTAL + 100) if r.startswith("task "))
    assert max(listed.values()) == 1, "a task was answered twice"
    assert set(done.values()) <= set(listed)


def _dropped(deployment: Deployment) -> int:
    """Tasks the direct front says it dropped with a dead worker (at-most-once)."""
    found = re.findall(r"dropping its (\d+) tasks \(at-most-once\)", deployment.log_tail(2000))
    return sum(int(count) for count in found)


@pytest.mark.slow
@pytest.mark.parametrize("guarantee", ["at-least-once", "at-most-once"])
def test_a_killed_worker_loses_what_the_guarantee_allows_and_answers_nothing_twice(
    middleware: str, backend: Backend, deploy: Deploy, settings: Settings, guarantee: str
):
    # 1 ms of work per task: the kill lands while the worker holds tasks.
    changes = {"guarantee": guarantee, "work_ms": 1.0, "result_limit": TOTAL + 100}
    deployment = deploy("filter", workers=2, **changes)
    _wait_until_both_workers_work(deployment, middleware)
    lossy = guarantee == "at-most-once"
    with backend.filter_client(settings.with_changes(**changes)) as client:
        ids, done = _stream_with_a_kill(client, deployment, lossy)
        _check_answered_once(client, ids, done)
    lost = TOTAL - len(done)
    if not lossy:
        assert lost == 0, f"{lost} accepted tasks were lost under at-least-once"
        return
    assert lost > 0, "at-most-once handed out again what the killed worker held"
    if middleware == "redis":
        # What a killed consumer held: the messages it popped and had not answered.
        assert lost <= prefetch_for(settings.with_changes(**changes))
    else:
        # What the front had leased to the killed worker, as it logged dropping them.
        assert lost == _dropped(deployment)
        assert "re-queuing" not in deployment.log_tail(2000)
