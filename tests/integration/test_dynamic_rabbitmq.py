"""The master against the real RabbitMQ, with real worker processes.

One short scripted run (about 30 s) is shared by the tests of this module: a step up, a
step down to silence, every answer counted. Its namespace is its own and is deleted.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynamic.record import Tick, TickWriter, measured_startup
from dynamic.runner import MasterOptions, delete_namespace, wait_for_consumers
from dynamic.simulate import Simulation, simulate
from dynamic.TestMaster import ProfileRun, run_profile, summarize_steps
from dynamic.trace import RateTrace
from middlewares.registry import get_backend
from middlewares.settings import Settings
from tests.helpers import require

WORK_MS = 50.0
#: Start, step up, step down, in msg/s for seconds; one worker does about 19 msg/s.
PROFILE = RateTrace.parse("15:4,90:12,0:10")
STEP_UP, STEP_DOWN = 4.0, 16.0
OPTIONS = MasterOptions(max_workers=8, window=4.0, poll=1.0, calibration=2.0)


@pytest.fixture(scope="module")
def dynamic_settings() -> Iterator[Settings]:
    """A namespace of this module's own, deleted afterwards."""
    settings = Settings.from_env().with_changes(
        namespace=f"ibtest-dyn-{uuid.uuid4().hex[:10]}", work_ms=WORK_MS
    )
    require(get_backend("rabbitmq"), settings)
    yield settings
    delete_namespace(settings)


@pytest.fixture(scope="module")
def run(dynamic_settings: Settings) -> ProfileRun:
    """The scripted run, shared by the tests below."""
    return run_profile(dynamic_settings, OPTIONS, PROFILE, threading.Event(), drain=20.0)


def _ticks_between(ticks: list[Tick], start: float, end: float) -> list[Tick]:
    return [tick for tick in ticks if start < tick.time <= end]


def test_one_worker_is_calibrated_below_its_service_time_bound(run: ProfileRun):
    # A worker sleeping 50 ms per task cannot do more than 20 tasks a second.
    assert 0 < run.worker_rate <= 1000 / WORK_MS * 1.02
    assert run.policy.capacity == pytest.approx(run.worker_rate * run.policy.target_time)


def test_a_step_up_raises_the_workers_within_two_polls(run: ProfileRun):
    needed = math.ceil(90 * run.policy.target_time / run.policy.capacity)
    before = _ticks_between(run.ticks, 0, STEP_UP)
    assert before[-1].wanted < needed, "the low rate must need fewer workers"
    # Two polls, plus a little for a tick that runs late on a busy machine.
    early = _ticks_between(run.ticks, STEP_UP, STEP_UP + 2 * OPTIONS.poll + 0.3)
    assert max(tick.wanted for tick in early) >= needed
    # And they really start: the broker sees them consume during the step.
    during = _ticks_between(run.ticks, STEP_UP, STEP_DOWN)
    assert max(tick.consumers for tick in during) >= needed


def test_a_step_down_lowers_the_workers_only_after_the_window(run: ProfileRun):
    assert _ticks_between(run.ticks, 0, STEP_DOWN)[-1].wanted > 1
    after_step = [tick for tick in run.ticks if tick.time > STEP_DOWN]
    # The window held the workers for a while after the formula asked for fewer ...
    assert any(t.recommended < t.running == t.wanted for t in after_step), "nothing held"
    # ... and every decision to run fewer than were running came only after a whole
    # window in which every recommendation was lower than that. Checked decision by
    # decision against the running count the policy saw, so a worker that is slow to
    # start on a busy machine cannot make the check fail.
    downs = [tick for tick in after_step if tick.wanted < tick.running]
    assert downs, "the workers never went down after the step down"
    for down in downs:
        # A tick a few ms either side of the window's edge may fall in or out of it.
        inside = [t for t in run.ticks if down.time - OPTIONS.window + 0.1 <= t.time <= down.time]
        assert all(t.recommended < down.running for t in inside), down
        last_high = max(
            (t.time for t in run.ticks if t.time < down.time and t.recommended >= down.running),
            default=run.ticks[0].time,
        )
        assert down.time - last_high >= OPTIONS.window - 0.1, down
    assert run.ticks[-1].wanted == 1


def test_no_task_is_lost_or_answered_twice_across_scale_downs(run: ProfileRun):
    scale_downs = sum(1 for tick in run.ticks if tick.wanted < tick.running)
    assert scale_downs >= 1
    assert run.tally.published == pytest.approx(PROFILE.messages_by(PROFILE.duration), abs=2)
    assert (run.tally.lost, run.tally.duplicated, run.tally.unexpected) == (0, 0, 0)


def test_lambda_is_within_ten_percent_of_what_was_sent_at_steady_state(run: ProfileRun):
    for step in summarize_steps(run.ticks, PROFILE):
        if step.rate:
            assert step.sent == pytest.approx(step.rate, rel=0.1), "the load generator lagged"
            assert step.measured == pytest.approx(step.sent, rel=0.1)


def test_the_simulator_reproduces_the_worker_curve_at_steady_state(run: ProfileRun, tmp_path: Path):
    with TickWriter(tmp_path / "run.csv") as writer:
        for tick in run.ticks:
            writer.write(tick)
    replay = RateTrace.from_record(tmp_path / "run.csv")
    # The model's workers start as slowly as the real ones did on this machine today.
    startup = measured_startup(run.ticks, OPTIONS.poll)
    assert startup is not None
    simulated = simulate(
        Simulation(replay, run.policy, OPTIONS.poll, OPTIONS.prefetch, startup, drain=0)
    )
    # Steady state: the end of each step, once the window has let transients go.
    for _start, end, _rate in PROFILE.intervals():
        real = _ticks_between(run.ticks, 0, end)[-1]
        model = min(simulated, key=lambda tick: abs(tick.time - real.time))
        assert abs(real.wanted - model.wanted) <= 1, (real, model)


def test_main_runs_until_ctrl_c_and_leaves_no_worker(dynamic_settings: Settings):
    settings = dynamic_settings.with_changes(namespace=f"{dynamic_settings.namespace}-main")
    command = [
        sys.executable, "-m", "dynamic.Main", "--capacity", "40", "--min", "2",
        *settings.to_args(),
    ]  # fmt: skip
    master = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_consumers(settings, 2, timeout=20)
        master.send_signal(signal.SIGINT)
        output, _ = master.communicate(timeout=30)
        assert master.returncode == 0, output
        assert "workers  1 ->  2" in output
        wait_for_consumers(settings, 0, timeout=5)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
        delete_namespace(settings)
