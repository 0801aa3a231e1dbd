"""Rate traces, the queue model and the simulator, which runs the real master's code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dynamic.model import QueueModel, SimulatedLauncher
from dynamic.plot import plot_ticks
from dynamic.policy import PolicyConfig
from dynamic.record import TickWriter, read_ticks
from dynamic.simulate import Simulation, simulate
from dynamic.trace import RateTrace, Step


def test_a_profile_is_rate_seconds_steps():
    trace = RateTrace.parse("50:10, 500:5,0:2.5")
    assert trace.steps == [Step(50, 10), Step(500, 5), Step(0, 2.5)]
    assert trace.duration == 17.5
    assert trace.peak == 500
    assert trace.intervals() == [(0, 10, 50), (10, 15, 500), (15, 17.5, 0)]
    assert str(trace) == "50:10,500:5,0:2.5"
    assert [trace.rate_at(t) for t in (-1, 0, 9.99, 10, 16, 17.5)] == [0, 50, 50, 500, 0, 0]
    assert trace.messages_by(12) == pytest.approx(500 + 1000)
    assert trace.messages_by(100) == pytest.approx(3000)


@pytest.mark.parametrize("text", ["", "50", "50:x", "-5:10", "5:0", "5:10,,"])
def test_a_bad_profile_says_how_to_write_one(text):
    with pytest.raises(ValueError, match=r"RATE:SECONDS|rate >= 0"):
        RateTrace.parse(text)


def _policy(**changes) -> PolicyConfig:
    return PolicyConfig(**{"capacity": 40.0, "max_workers": 20, "window": 10.0, **changes})


def test_the_model_holds_as_many_messages_as_workers_are_busy():
    model = QueueModel(worker_rate=20.0)
    launcher = SimulatedLauncher(model)
    launcher.start(10)
    model.advance(30, RateTrace.parse("100:30"))
    observed = model.observe()
    # 100 msg/s on workers doing 20 msg/s each: 5 busy (Little's law), none waiting.
    assert observed.backlog == 5
    assert observed.ready == 0
    assert observed.acked == pytest.approx(100 * 30 - 5, abs=1)
    assert model.arrived == pytest.approx(3000)


def test_the_model_queues_what_the_workers_cannot_take():
    model = QueueModel(worker_rate=20.0, prefetch=2)
    SimulatedLauncher(model).start(2)
    model.advance(10, RateTrace.parse("100:10"))
    observed = model.observe()
    # 40 msg/s served out of 100: 60 msg/s pile up; each worker holds 2.
    assert observed.unacked == 4
    assert observed.backlog == pytest.approx(600, rel=0.05)


def test_new_workers_consume_only_after_their_start_up():
    model = QueueModel(worker_rate=20.0, startup=1.5)
    launcher = SimulatedLauncher(model)
    launcher.start(3)
    model.advance(1.0, RateTrace.parse("0:1"))
    assert model.observe().consumers == 0
    model.advance(1.0, RateTrace.parse("0:1"))
    assert model.observe().consumers == 3
    launcher.stop(launcher.workers()[:2])
    assert model.observe().consumers == 1


def _wanted_at(ticks, moment: float) -> int:
    return next(tick.wanted for tick in ticks if tick.time >= moment)


def test_simulated_step_up_is_followed_within_two_polls_and_down_after_the_window():
    # C = 40 per 2 s, so a worker does 20 msg/s. 15 msg/s: (0.75 in service + 30) / 40
    # -> 1 worker; 190 msg/s: (9.5 in service + 380) / 40 -> 10 workers.
    trace = RateTrace.parse("15:20,190:30,15:30")
    ticks = simulate(Simulation(trace, _policy(), poll=1.0, startup=0.5))
    assert _wanted_at(ticks, 19) == 1
    assert _wanted_at(ticks, 22) >= 10, "up within two polls of the step at t=20"
    # The step down at t=50: held for the window, then down to the formula's answer.
    assert all(tick.wanted >= 10 for tick in ticks if 50 <= tick.time < 60)
    assert _wanted_at(ticks, 65) == 1
    # Lambda in the model is exact once the rate is steady.
    assert next(t for t in ticks if t.time >= 40).arrival_rate == pytest.approx(190, rel=1e-6)


def test_the_simulator_scales_far_beyond_one_machine():
    trace = RateTrace.parse("1000:10,100000:30,0:20")
    policy = PolicyConfig(capacity=500.0, max_workers=500, window=10.0)
    ticks = simulate(Simulation(trace, policy))
    # 100,000 msg/s on workers of 250 msg/s: 400 busy workers hold 400 messages, so
    # (400 + 100,000 * 2) / 500 = 400.8 -> 401 workers once the backlog is gone.
    assert _wanted_at(ticks, 39) == 401
    assert max(tick.wanted for tick in ticks) <= 500
    assert ticks[-1].wanted == 1
    assert ticks[-1].backlog == 0


def test_ticks_round_trip_through_csv_and_the_figure_is_drawn(tmp_path):
    ticks = simulate(Simulation(RateTrace.parse("20:5,200:10,0:5"), _policy(window=3.0)))
    with TickWriter(tmp_path / "run.csv") as writer:
        for tick in ticks:
            writer.write(tick)
    again = read_ticks(tmp_path / "run.csv")
    assert [t.wanted for t in again] == [t.wanted for t in ticks]
    assert again[5].time == pytest.approx(ticks[5].time, abs=1e-3)
    plot_ticks(again, tmp_path / "run.png", "test")
    assert (tmp_path / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_recorded_run_replays_as_its_offered_rate(tmp_path):
    ticks = simulate(Simulation(RateTrace.parse("20:5,200:10,0:5"), _policy(window=3.0)))
    with TickWriter(tmp_path / "run.csv") as writer:
        for tick in ticks:
            writer.write(tick)
    replay = RateTrace.from_record(tmp_path / "run.csv")
    assert replay.rate_at(2.5) == pytest.approx(20)
    assert replay.rate_at(10.5) == pytest.approx(200)
    assert replay.rate_at(17.5) == pytest.approx(0)


def test_reading_a_file_that_is_not_a_record_names_it(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"other\.csv is not a dynamic-scaling record"):
        read_ticks(path)


def test_simulate_command_writes_the_record_and_the_figure(tmp_path):
    csv, png = tmp_path / "simulated.csv", tmp_path / "simulated.png"
    done = subprocess.run(
        [sys.executable, "-m", "dynamic.simulate", "--profile", "100:5,1000:5",
         "--worker-rate", "50", "--max", "50", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "peak" in done.stdout
    assert 20 <= max(tick.wanted for tick in read_ticks(csv)) <= 50
    assert png.stat().st_size > 0


def test_simulate_command_refuses_a_bad_profile_without_a_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "dynamic.simulate", "--profile", "fast"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "RATE:SECONDS" in done.stderr
    assert "Traceback" not in done.stderr
