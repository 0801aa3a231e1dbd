"""The n-node form: one body per behaviour, run on every middleware and service.

Every deployment here is ``python -m middlewares serve <mw> <service> --nodes N``; shared
state lives in Redis (see middlewares/cluster/), which is how the tests find the
broadcasting node and read the per-node counters.
"""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import psutil
import pytest

from middlewares.cluster.client import connect as redis_client
from middlewares.contract import Backend
from middlewares.launch.deployment import Deployment
from middlewares.registry import get_backend
from middlewares.settings import Settings
from tests.helpers import Deploy, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(params=["insult", "filter"])
def service(request: pytest.FixtureRequest) -> str:
    """Each service in turn."""
    return request.param


def _drive(backend: Backend, settings: Settings, service: str, count: int) -> int:
    """Serve ``count`` requests or tasks through one client; returns how many succeeded."""
    if service == "insult":
        with backend.insult_client(settings) as client:
            return sum(bool(client.random_insult()) for _ in range(count))
    with backend.filter_client(settings) as client:
        ids = client.submit_many([f"task {n} tonto" for n in range(count)])
        return len(_collect(client, ids, timeout=60))


def _collect(client, ids: list[str], timeout: float) -> dict[str, str]:
    done: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(ids) and time.monotonic() < deadline:
        done.update(client.wait([i for i in ids if i not in done], timeout=1.0))
    return done


def test_three_nodes_share_the_load(backend: Backend, deploy: Deploy, settings, service):
    # A little simulated work keeps every node busy, as in the speedup study.
    deployment = deploy(service, nodes=3, work_ms=1.0)
    before = deployment.node_counters()
    with ThreadPoolExecutor(4) as pool:
        served = sum(
            pool.map(lambda _: _drive(backend, deployment.settings, service, 750), range(4))
        )
    assert served == 3000
    assert wait_for(
        lambda: sum(deployment.node_counters().values()) >= sum(before.values()) + 3000,
        timeout=5,
    )
    after = deployment.node_counters()
    shares = {node: (after[node] - before.get(node, 0)) / 3000 for node in after}
    assert len(shares) == 3, shares
    assert min(shares.values()) >= 0.15, shares


def _add_all(middleware: str, settings: Settings, insults: list[str]) -> int:
    with get_backend(middleware).insult_client(settings) as client:
        return sum(client.add_insult(insult) for insult in insults)


def test_concurrent_adds_through_many_nodes_are_consistent(
    middleware: str, backend: Backend, deploy: Deploy, settings
):
    deployment = deploy("insult", nodes=3, load_defaults=False)
    insults = [f"shared insult {n}" for n in range(60)]
    orders = [insults[k::2] + insults[::-1] for k in range(8)]
    with ProcessPoolExecutor(8) as pool:
        added = sum(pool.map(_add_all, [middleware] * 8, [deployment.settings] * 8, orders))
    assert added == len(insults), "every insult is new exactly once, whichever node added it"
    with (
        backend.insult_client(deployment.settings) as writer,
        backend.insult_client(deployment.settings) as reader,
    ):
        assert sorted(reader.get_insults()) == sorted(insults)
        for n in range(6):
            assert writer.add_insult(f"fresh {n}") is True
            # Three reads in a row: spread over the nodes, each must see the add at once.
            assert all(f"fresh {n}" in reader.get_insults() for _ in range(3))


def test_killing_a_node_loses_nothing(backend: Backend, deploy: Deploy, settings, service):
    deployment = deploy(service, nodes=3, work_ms=0.5)
    victim = deployment.node_pids()[0]
    if service == "filter":
        total = 5000
        texts = [f"text {n} feo" for n in range(total)]
        with backend.filter_client(deployment.settings) as client:
            ids: list[str] = []
            for start in range(0, total, 250):
                ids += client.submit_many(texts[start : start + 250])
                if start == 1000:
                    os.kill(victim, signal.SIGKILL)
            done = _collect(client, ids, timeout=90)
        assert len(set(ids)) == total
        assert len(done) == total, f"{total - len(done)} accepted tasks were lost"
        assert [done[i] for i in ids] == [f"text {n} CENSORED" for n in range(total)]
        return
    failures: list[BaseException] = []
    calls = [0]
    stop = threading.Event()

    def keep_calling() -> None:
        with backend.insult_client(deployment.settings) as client:
            while not stop.is_set():
                try:
                    assert client.random_insult()
                    calls[0] += 1
                except BaseException as error:
                    failures.append(error)

    threads = [threading.Thread(target=keep_calling) for _ in range(3)]
    for thread in threads:
        thread.start()
    assert wait_for(lambda: calls[0] > 300, timeout=20)
    os.kill(victim, signal.SIGKILL)
    killed_at = calls[0]
    assert wait_for(lambda: calls[0] > killed_at + 1000, timeout=30)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert failures == [], f"InsultService clients saw failed calls: {failures[:3]}"


def _broadcaster_pid(deployment: Deployment) -> int | None:
    client = redis_client(deployment.settings)
    try:
        holder = client.get(f"{deployment.settings.namespace}:insults:broadcaster")
    finally:
        client.close()
    for pid in deployment.node_pids():
        if holder and holder.decode() in psutil.Process(pid).cmdline():
            return pid
    return None


def test_exactly_one_broadcaster_and_it_is_replaced(backend: Backend, deploy: Deploy, settings):
    interval = 0.6
    deployment = deploy("insult", nodes=3, broadcast_interval=interval)
    received: list[float] = []
    with backend.insult_client(deployment.settings) as client:
        client.subscribe(lambda insult: received.append(time.monotonic()))
        # Counted, not timed: seven broadcasts give six gaps, however long they take.
        assert wait_for(lambda: len(received) >= 7, timeout=60 * interval)
        gaps = [b - a for a, b in itertools.pairwise(received[:7])]
        # Three broadcasters would send three per interval (gaps near interval / 3).
        assert statistics.median(gaps) >= 0.6 * interval, f"gaps {gaps} with 3 nodes"
        pid = _broadcaster_pid(deployment)
        assert pid is not None, "the lease names no live node"
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        assert wait_for(lambda: any(t > killed_at for t in received), timeout=60 * interval), (
            "no node took over the broadcasts"
        )
        first_after = min(t for t in received if t > killed_at)
        last_before = max(t for t in received if t <= killed_at)
        # The lease lives one interval and is bid for every quarter: a takeover is due
        # within about 1.25 intervals; the bound is loose for a loaded machine.
        assert first_after - last_before <= 5 * interval
        client.unsubscribe()


def test_nodes_can_join_and_leave_gracefully(backend: Backend, deploy: Deploy, settings):
    deployment = deploy("filter", nodes=2, work_ms=1.0)
    joined = Deployment(deployment.middleware, "filter", deployment.settings, join_as="joined-node")
    joined.start()
    try:
        total = 3000
        with backend.filter_client(deployment.settings) as client:
            ids = client.submit_many([f"text {n} bobo" for n in range(total)])
            leaver = deployment.node_pids()[0]
            os.kill(leaver, signal.SIGTERM)  # a graceful removal while work is queued
            done = _collect(client, ids, timeout=90)
            assert wait_for(lambda: not psutil.pid_exists(leaver), timeout=30)
        assert len(done) == total
        assert [done[i] for i in ids] == [f"text {n} CENSORED" for n in range(total)]
        counters = deployment.node_counters()
        assert counters.get("joined-node", 0) > 0, counters
    finally:
        joined.stop()


@pytest.mark.parametrize("middleware", ["xmlrpc", "pyro"], indirect=True)
def test_an_insult_node_joins_under_load_and_leaves_gracefully(
    backend: Backend, deploy: Deploy, settings
):
    """The direct middlewares route InsultService calls through a master's node list:
    a joined node must be listed and get calls, a leaving one must be unlisted first,
    and clients calling all along see no failure and no add applied twice."""
    deployment = deploy("insult", nodes=2, load_defaults=False)
    failures: list[BaseException] = []
    added: list[bool] = []
    stop = threading.Event()

    def keep_calling(name: str) -> None:
        with backend.insult_client(settings) as client:
            n = 0
            while not stop.is_set():
                try:
                    added.append(client.add_insult(f"{name} {n}"))
                    client.random_insult()
                    n += 1
                except BaseException as error:
                    failures.append(error)

    threads = [threading.Thread(target=keep_calling, args=[f"c{k}"]) for k in range(2)]
    for thread in threads:
        thread.start()
    joined = Deployment(deployment.middleware, "insult", settings, join_as="joined-node")
    try:
        joined.start()
        assert wait_for(lambda: len(backend.live_nodes("insult", settings)) == 3, 15)
        # Clients refresh their node list every 2 s: the joined node gets calls.
        assert wait_for(lambda: joined.node_counters().get("joined-node", 0) > 50, 15), (
            joined.node_counters()
        )
        leaver = deployment.node_pids()[0]
        os.kill(leaver, signal.SIGTERM)  # it deregisters, answers what it accepted, exits
        assert wait_for(lambda: not psutil.pid_exists(leaver), 15)
        assert len(backend.live_nodes("insult", settings)) == 2, "it withdrew before it went"
        calls_after = len(added)
        assert wait_for(lambda: len(added) > calls_after + 200, 15)
        assert "left the deployment" in deployment.log_tail(200), "it exited with status 0"
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        joined.stop()
    assert failures == [], f"calls failed while nodes came and went: {failures[:3]}"
    assert all(added), "no retried add was applied twice: every insult here is new"
    for log in (deployment.log_tail(200), joined.log_tail(100)):
        assert "Traceback" not in log


@pytest.mark.parametrize("nodes", [1, 2, 3])
def test_n_node_form_starts_and_stops_cleanly(
    middleware: str, settings: Settings, service: str, nodes: int
):
    deployment = Deployment(middleware, service, settings, nodes=nodes)
    with deployment:
        pids = deployment.worker_pids()
        assert len(deployment.node_pids()) == nodes
    assert wait_for(lambda: not any(psutil.pid_exists(p) for p in pids), timeout=10)
    leftovers = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if settings.namespace in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []
