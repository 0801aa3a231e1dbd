"""XML-RPC and Pyro4 coordinators fail over, as an operator meets it: SIGKILL the filter
front, the InsultService master or the Pyro4 name server in the middle of a stream of
requests; the launcher starts it again, and clients, nodes and workers carry on.

Every accepted task is answered exactly once, every InsultService request succeeds, and
new requests succeed again within 10 s of the kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from middlewares.contract import Backend
from middlewares.launch.deployment import Deployment
from middlewares.registry import get_backend
from middlewares.settings import Settings
from tests.helpers import Deploy, require, wait_for

pytestmark = pytest.mark.slow

#: Tasks or requests in one stream, and after how many of them the coordinator dies.
STREAM = 3000
KILL_AFTER = 900

#: How soon after the kill requests must succeed again.
RECOVERY_S = 10.0


@pytest.fixture(params=["xmlrpc", "pyro"])
def middleware(request: pytest.FixtureRequest, settings: Settings) -> Iterator[str]:
    """XML-RPC and Pyro4 in turn; the namespace is cleaned up afterwards."""
    backend = get_backend(request.param)
    require(backend, settings)
    yield request.param
    backend.cleanup(settings)


def pid_of(deployment: Deployment, module: str) -> int:
    """The pid of the deployment's process running ``python -m <...module>``."""
    for pid in deployment.worker_pids():
        try:
            if any(arg.endswith(module) for arg in psutil.Process(pid).cmdline()):
                return pid
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"no process runs {module}:\n{deployment.log_tail()}")


def restarted(deployment: Deployment, module: str, old_pid: int) -> bool:
    """True once another process runs ``module`` in place of ``old_pid``."""
    try:
        return pid_of(deployment, module) != old_pid
    except AssertionError:
        return False


class Answers:
    """What a client got back, task by task, and any task answered twice."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.twice: list[str] = []

    def record(self, done: dict[str, str]) -> None:
        for task_id, text in done.items():
            if task_id in self.texts:
                self.twice.append(task_id)
            self.texts[task_id] = text


@pytest.mark.parametrize("nodes", [None, 2], ids=["one-node", "n-node"])
def test_a_killed_front_loses_no_accepted_task_and_answers_each_once(
    backend: Backend, deploy: Deploy, settings, nodes
):
    # A little work per task: the kill lands while tasks are queued, leased and done.
    deployment = deploy("filter", workers=2, nodes=nodes, work_ms=0.5)
    expected = {f"task {n} tonto": f"task {n} CENSORED" for n in range(STREAM)}
    texts = list(expected)
    front = pid_of(deployment, "filter_front")
    answers = Answers()
    accepted: dict[str, str] = {}
    with backend.filter_client(deployment.settings) as client:
        for start in range(0, STREAM, 100):
            if start == KILL_AFTER:
                os.kill(front, signal.SIGKILL)
                killed_at = time.monotonic()
            chunk = texts[start : start + 100]
            accepted.update(zip(client.submit_many(chunk), chunk, strict=True))
            if start == KILL_AFTER:
                recovered_in = time.monotonic() - killed_at
            # Collect as results come, so some are in the front, uncollected, when it dies.
            answers.record(client.wait(list(accepted.keys() - answers.texts.keys()), 0))
        deadline = time.monotonic() + 90
        while len(answers.texts) < STREAM and time.monotonic() < deadline:
            answers.record(client.wait(list(accepted.keys() - answers.texts.keys()), 1.0))
    assert restarted(deployment, "filter_front", front), "the launcher restarted the front"
    assert recovered_in < RECOVERY_S
    assert answers.twice == [], f"{len(answers.twice)} tasks were answered twice"
    assert len(accepted) == STREAM
    lost = accepted.keys() - answers.texts.keys()
    assert not lost, f"{len(lost)} accepted tasks were never answered:\n{deployment.log_tail()}"
    assert all(answers.texts[task_id] == expected[text] for task_id, text in accepted.items())
    with backend.filter_client(deployment.settings) as client:
        assert client.filter("still tonto") == "still CENSORED"


def test_nodes_serve_while_the_master_is_away_and_register_again(
    backend: Backend, deploy: Deploy, settings
):
    deployment = deploy("insult", nodes=2)
    master = pid_of(deployment, "master")
    nodes = set(deployment.node_pids())
    failures: list[BaseException] = []
    served = [0]
    with backend.insult_client(deployment.settings) as client:
        for count in range(STREAM):
            if count == KILL_AFTER:
                os.kill(master, signal.SIGKILL)
            try:
                assert client.random_insult()
                served[0] += 1
            except Exception as error:  # counted, reported below
                failures.append(error)
    assert failures == [], f"{len(failures)} requests failed: {failures[:3]}"
    assert served[0] == STREAM
    assert wait_for(lambda: restarted(deployment, "master", master), RECOVERY_S)
    assert set(deployment.node_pids()) == nodes, "no node died with the master"

    def new_client_served() -> bool:
        try:
            with backend.insult_client(deployment.settings) as fresh:
                return bool(fresh.random_insult())
        except Exception:  # not back yet
            return False

    assert wait_for(new_client_served, RECOVERY_S), deployment.log_tail()
    assert "registered again with the master" in deployment.log_tail(400)


def test_a_killed_pyro_name_server_comes_back_with_every_name(settings):
    backend = get_backend("pyro")
    require(backend, settings)
    with Deployment("pyro", "filter", settings, workers=1) as deployment:
        name_server = pid_of(deployment, "name_server")
        os.kill(name_server, signal.SIGKILL)
        killed_at = time.monotonic()

        def looked_up_and_served() -> bool:
            try:
                with backend.filter_client(settings.with_changes(timeout=2.0)) as client:
                    return client.filter("tonto", timeout=2.0) == "CENSORED"
            except Exception:  # not back yet
                return False

        assert wait_for(looked_up_and_served, RECOVERY_S), deployment.log_tail()
        assert time.monotonic() - killed_at < RECOVERY_S
        assert restarted(deployment, "name_server", name_server)
    backend.cleanup(settings)


def test_a_coordinator_that_cannot_start_still_ends_the_deployment(settings):
    """Restarting is for crashes: a server whose port is taken fails its starts, and the
    launcher gives up with one line and status 1, as before."""
    with Deployment("xmlrpc", "echo", settings):
        command = [sys.executable, "-m", "middlewares", "serve", "xmlrpc", "echo"]
        launcher = subprocess.run(
            [*command, *settings.to_args()],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert launcher.returncode == 1
        assert "times in a row right after starting" in launcher.stderr
        assert "Traceback" not in launcher.stderr
        with get_backend("xmlrpc").echo_client(settings) as client:
            assert client.echo("the first one serves") == "the first one serves"
