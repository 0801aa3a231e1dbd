"""CPU caps without a capped process: the self-throttle's arithmetic on fake clocks,
auto falling back to self-throttling with a one-line notice, and the default share."""

from __future__ import annotations

import pytest

from middlewares.launch.cpu_cap import CpuCapError, choose_method, default_node_fraction
from middlewares.throttle import SelfThrottle


def test_self_throttle_pays_back_debt_so_the_long_run_share_is_exact():
    clock = {"wall": 0.0, "cpu": 0.0}
    paused = []

    def pause(seconds: float) -> None:
        paused.append(seconds)
        clock["wall"] += seconds  # no CPU is spent while paused

    throttle = SelfThrottle(
        0.25, cpu_clock=lambda: clock["cpu"], wall_clock=lambda: clock["wall"], pause=pause
    )
    for _ in range(400):  # a busy process: every wall second between checks is CPU
        step = max(throttle.step(), 0.005) + 0.003  # the throttle wakes up a bit late
        clock["wall"] += step
        clock["cpu"] += step
    assert paused, "a busy process was never paused"
    assert clock["cpu"] / clock["wall"] == pytest.approx(0.25, abs=0.01)


def test_an_idle_process_is_never_paused():
    paused = []
    clock = {"wall": 0.0}
    throttle = SelfThrottle(
        0.25, cpu_clock=lambda: 0.0, wall_clock=lambda: clock["wall"], pause=paused.append
    )
    for _ in range(50):
        clock["wall"] += throttle.step()
    assert not paused


def test_auto_falls_back_to_self_with_a_one_line_notice(tmp_path):
    not_a_cgroup = tmp_path / "no-cgroup-here"
    not_a_cgroup.mkdir()
    not_a_cgroup.chmod(0o500)  # unwritable for a normal user; root sees no cpu controller
    choice = choose_method("auto", cgroup_root=not_a_cgroup)
    assert choice.method == "self"
    assert "\n" not in choice.notice
    assert "throttle themselves" in choice.notice
    assert str(not_a_cgroup) in choice.notice
    with pytest.raises(CpuCapError, match="--cap-method cgroup cannot work here"):
        choose_method("cgroup", cgroup_root=not_a_cgroup)
    assert list(not_a_cgroup.iterdir()) == [], "the probe left something behind"


def test_default_fraction_leaves_the_machine_room():
    assert default_node_fraction(3, 2) == 0.25  # 3 x 0.25 = 0.75 <= 40% of 2 cores
    assert default_node_fraction(3, 16) == 1.0
    assert default_node_fraction(2, 2) == 0.4
    assert default_node_fraction(40, 1) == 0.05
