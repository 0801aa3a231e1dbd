"""CPU caps: each method holds a busy process to its share, cgroups never outlive their
launcher, and a launcher that falls back to self-throttling says so and still serves.
The rules without a process (the throttle's arithmetic, choosing a method, the default
share) are in tests/unit/test_cpu_cap_rules.py."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from middlewares.contract import MiddlewareError, ProcessSpec
from middlewares.launch import cgroups
from middlewares.launch.cpu_cap import (
    CpuCapError,
    CpuCapper,
    CpuCaps,
    choose_method,
)
from middlewares.launch.processes import start_process, stop_processes
from middlewares.registry import get_backend
from middlewares.settings import Settings
from tests.helpers import require, wait_for

CAP = 0.25
MEASURED_S = 3.0


def _chosen_or_skip(method: str) -> None:
    """Skip, with the reason in one line, when ``method`` cannot work on this machine."""
    try:
        choose_method(method)
    except CpuCapError as error:
        if method == "cgroup-v1" and os.environ.get("CI") and os.geteuid() == 0:
            pytest.fail(f"cgroup v1 should work as root under CI: {error}")
        pytest.skip(str(error))


@pytest.mark.parametrize("method", ["cgroup-v1", "cgroup-v2", "systemd", "self"])
def test_each_method_holds_a_busy_process_to_a_quarter_core(method, tmp_path):
    _chosen_or_skip(method)
    capper = CpuCapper(CpuCaps(node=CAP, method=method), choose_method(method))
    ready = tmp_path / "ready"
    spec = ProcessSpec(
        "busy-node", "tests.busy_process", [str(ready), str(MEASURED_S + 30)], role="node"
    )
    process = start_process(spec, capper.placement(spec))
    try:
        assert wait_for(ready.exists, 20), "the busy process never started"
        assert len(os.sched_getaffinity(process.pid)) == 1, "a node is a one-core machine"
        watched = psutil.Process(process.pid)
        cpu_start, wall_start = sum(watched.cpu_times()[:2]), time.monotonic()
        time.sleep(MEASURED_S)  # the measurement window itself
        cpu_end, wall_end = sum(watched.cpu_times()[:2]), time.monotonic()
    finally:
        stop_processes([process], 5.0)
        capper.close()
    share = (cpu_end - cpu_start) / (wall_end - wall_start)
    assert 0.20 <= share <= 0.30, f"{method}: {share:.3f} of a core"


def test_the_launcher_says_it_falls_back_and_its_nodes_still_serve(tmp_path):
    settings = Settings.from_env().with_changes(namespace=f"ibtest-cap-{os.getpid()}")
    require(get_backend("redis"), settings)
    env = {**os.environ, "INSULTBENCH_CGROUP_ROOT": str(tmp_path / "missing")}
    command = [sys.executable, "-m", "middlewares", "serve", "redis", "filter", "--nodes", "1",
               "--node-cpu", "0.25", *settings.to_args()]  # fmt: skip
    launcher = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        notice = launcher.stderr.readline()
        assert notice.startswith("cpu cap: no usable cgroup"), notice
        with get_backend("redis").filter_client(settings) as client:
            assert client.filter("you fool", timeout=20) == "you CENSORED"
        node = psutil.Process(launcher.pid).children()[0]
        assert node.environ().get("INSULTBENCH_SELF_CPU_CAP") == "0.25"
    finally:
        launcher.send_signal(signal.SIGINT)
        launcher.communicate(timeout=30)
        get_backend("redis").cleanup(settings)


def _launch_capped(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """An XML-RPC InsultService with one node, the node and the master each capped."""
    command = [sys.executable, "-m", "middlewares", "serve", "xmlrpc", "insult", "--nodes",
               "1", "--node-cpu", "0.25", "--coordinator-cpu", "0.5", "--cap-method", "cgroup",
               *settings.to_args()]  # fmt: skip
    with log.open("wb") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)


def _tree(log: Path) -> Path | None:
    """The launcher's cgroup tree, as its log names it."""
    found = re.search(r"held by cgroup-v\d in (\S+)", log.read_text(errors="replace"))
    return Path(found.group(1)) if found else None


def test_cgroups_are_removed_after_sigint(settings, tmp_path):
    _chosen_or_skip("cgroup")
    require(get_backend("redis"), settings)
    log = tmp_path / "launcher.log"
    launcher = _launch_capped(settings, log)
    try:
        assert wait_for(lambda: _tree(log) is not None, 20), log.read_text()
        tree = _tree(log)
        assert wait_for(lambda: _answers(settings), 20), log.read_text()
        members = [p for p in tree.rglob("cgroup.procs") if p.read_text().split()]
        assert len(members) == 2, "the master and the node should each be in a cgroup"
    finally:
        launcher.send_signal(signal.SIGINT)
        launcher.wait(30)
        get_backend("xmlrpc").cleanup(settings)
    assert launcher.returncode == 0
    assert not tree.exists()


def test_cgroups_are_removed_after_a_run_that_fails(settings, tmp_path):
    _chosen_or_skip("cgroup")
    require(get_backend("redis"), settings)
    log = tmp_path / "launcher.log"
    with socket.socket() as taken:  # the master cannot bind its port, so the run fails
        taken.bind((settings.host, 0))
        taken.listen()
        launcher = _launch_capped(settings.with_changes(insult_port=taken.getsockname()[1]), log)
        launcher.wait(60)
    tree = _tree(log)
    assert launcher.returncode != 0
    assert tree is not None, f"the launcher never created its cgroups:\n{log.read_text()}"
    assert not tree.exists()


def test_trees_of_dead_launchers_are_removed(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"{cgroups.PREFIX}{gone.pid}-dead"
    (stale / "node-1").mkdir(parents=True)
    alive = tmp_path / f"{cgroups.PREFIX}{os.getpid()}-alive"
    alive.mkdir()
    assert cgroups.remove_stale(tmp_path) == [stale]
    assert not stale.exists()
    assert alive.exists()


def _answers(settings: Settings) -> bool:
    try:
        with get_backend("xmlrpc").insult_client(settings.with_changes(timeout=2.0)) as client:
            return isinstance(client.random_insult(), str)
    except (MiddlewareError, OSError):
        return False


def test_capped_processes_are_spread_over_the_cpus_and_keep_theirs_on_restart():
    capper = CpuCapper(CpuCaps(node=0.25, method="self"), choose_method("self"))
    nodes = [ProcessSpec(f"node-{n}", "m", role="node") for n in range(3)]
    cpus = [capper.placement(spec).cpu for spec in nodes]
    available = sorted(os.sched_getaffinity(0))
    assert cpus == [available[n % len(available)] for n in range(3)]
    assert capper.placement(nodes[1]).cpu == cpus[1], "a restarted node keeps its CPU"
    assert capper.placement(nodes[0]).env == {"INSULTBENCH_SELF_CPU_CAP": "0.25"}
    assert capper.placement(ProcessSpec("front", "m", role="coordinator")) is None
