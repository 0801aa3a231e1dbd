"""The scaling policy as a specification: formula and units, clamps, up at once, down late."""

from __future__ import annotations

import itertools
import random

import pytest

from dynamic.policy import PolicyConfig, ScalingPolicy, workers_needed


def test_formula_is_backlog_plus_arrivals_over_capacity_rounded_up():
    # 100 msg/s for T = 2 s is 200 messages; a worker does C = 40 in 2 s: 5 workers.
    assert workers_needed(backlog=0, arrival_rate=100, target_time=2, capacity=40) == 5
    # 10 more waiting make 210 messages: 5.25 workers round up to 6.
    assert workers_needed(backlog=10, arrival_rate=100, target_time=2, capacity=40) == 6
    # A backlog alone must drain in T too.
    assert workers_needed(backlog=81, arrival_rate=0, target_time=2, capacity=40) == 3
    assert workers_needed(backlog=0, arrival_rate=0, target_time=2, capacity=40) == 0


def test_exact_multiples_do_not_round_up_from_float_noise():
    assert workers_needed(backlog=0.1 + 0.2, arrival_rate=0, target_time=1, capacity=0.3) == 1
    assert workers_needed(backlog=0, arrival_rate=60, target_time=2, capacity=40) == 3


@pytest.mark.parametrize("target_time", [0.5, 1, 2, 4])
def test_units_cancel_when_capacity_is_the_worker_rate_times_t(target_time):
    # A worker doing 20 msg/s has C = 20 * T: a steady 100 msg/s needs 5 workers for any T.
    config = PolicyConfig(capacity=20 * target_time, target_time=target_time, max_workers=50)
    assert config.worker_rate == pytest.approx(20)
    assert ScalingPolicy(config).recommend(backlog=0, arrival_rate=100) == 5


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ((-1, 0, 2, 40), "backlog and arrival rate"),
        ((0, -5, 2, 40), "backlog and arrival rate"),
        ((0, 1, 0, 40), "T and C must be positive"),
        ((0, 1, 2, 0), "T and C must be positive"),
    ],
)
def test_bad_formula_inputs_are_refused_with_a_message(inputs, message):
    with pytest.raises(ValueError, match=message):
        workers_needed(*inputs)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"capacity": 0}, "capacity"),
        ({"target_time": -1}, "target time"),
        ({"min_workers": -1}, "min workers"),
        ({"min_workers": 5, "max_workers": 4}, "max workers"),
        ({"min_workers": 0, "max_workers": 0}, "max workers"),
        ({"window": -1}, "window"),
    ],
)
def test_bad_policy_parameters_are_refused_with_a_message(changes, message):
    with pytest.raises(ValueError, match=message):
        PolicyConfig(**{"capacity": 40, **changes})


def test_recommendation_is_clamped_to_min_and_max():
    policy = ScalingPolicy(PolicyConfig(capacity=40, min_workers=2, max_workers=6))
    assert policy.recommend(backlog=0, arrival_rate=0) == 2
    assert policy.recommend(backlog=100_000, arrival_rate=100_000) == 6


def test_min_is_one_by_default_so_the_queue_is_never_left_unserved():
    policy = ScalingPolicy(PolicyConfig(capacity=40))
    assert policy.decide(now=0, backlog=0, arrival_rate=0, current=0) == 1


def test_scale_up_is_immediate():
    policy = ScalingPolicy(PolicyConfig(capacity=40, max_workers=20))
    assert policy.decide(now=0, backlog=0, arrival_rate=10, current=1) == 1
    assert policy.decide(now=1, backlog=0, arrival_rate=300, current=1) == 15


def _drive(policy: ScalingPolicy, rates: list[float], current: int = 1) -> list[int]:
    """Feed one rate per second and apply each decision; the worker count per second."""
    counts = []
    for second, rate in enumerate(rates):
        current = policy.decide(now=float(second), backlog=0, arrival_rate=rate, current=current)
        counts.append(current)
    return counts


def test_scale_down_waits_until_every_recommendation_of_the_window_was_lower():
    policy = ScalingPolicy(PolicyConfig(capacity=40, max_workers=20, window=10))
    # 100 msg/s (5 workers) for 15 s, then 20 msg/s (1 worker).
    counts = _drive(policy, [100] * 15 + [20] * 15)
    assert counts[:15] == [5] * 15
    # The last 5 was recommended at t=14, so the window holds a 5 until t=24.
    assert counts[15:25] == [5] * 10
    assert counts[25:] == [1] * 5


def test_scale_down_goes_to_the_highest_recommendation_of_the_window():
    policy = ScalingPolicy(PolicyConfig(capacity=40, max_workers=20, window=4))
    # 10 workers, then 3 for two seconds, then 1: after the window, 3 is what it keeps.
    counts = _drive(policy, [200] * 5 + [60] * 2 + [20] * 10)
    assert counts[5:9] == [10] * 4
    assert counts[9:11] == [3, 3]
    assert counts[-1] == 1


def test_no_scale_down_before_a_whole_window_has_been_seen():
    policy = ScalingPolicy(PolicyConfig(capacity=40, window=10))
    # Started with 5 workers already running and no load: keep them for the window.
    counts = _drive(policy, [0] * 12, current=5)
    assert counts[:10] == [5] * 10
    assert counts[10:] == [1, 1]


def test_more_workers_than_the_maximum_are_cut_at_once():
    policy = ScalingPolicy(PolicyConfig(capacity=40, max_workers=8))
    assert policy.decide(now=0, backlog=0, arrival_rate=0, current=20) == 8


def test_zero_window_follows_the_formula_both_ways():
    policy = ScalingPolicy(PolicyConfig(capacity=40, max_workers=20, window=0))
    assert _drive(policy, [100, 20, 100, 20]) == [5, 1, 5, 1]


def test_alternating_recommendations_do_not_flap():
    policy = ScalingPolicy(PolicyConfig(capacity=40, max_workers=20, window=10))
    # The formula alternates 4 and 5 (75 and 95 msg/s): the count must hold at 5.
    counts = _drive(policy, [75, 95] * 30)
    assert counts[1:] == [5] * 59


def test_a_noisy_steady_rate_does_not_flap():
    rng = random.Random(20240601)
    policy = ScalingPolicy(PolicyConfig(capacity=40, max_workers=20, window=10))
    # 100 msg/s +- 15 %: the formula says 5 or 6 at random, second after second.
    rates = [100 * rng.uniform(0.85, 1.15) for _ in range(300)]
    recommendations = [policy.recommend(0, rate) for rate in rates]
    assert set(recommendations) == {5, 6}
    formula_changes = sum(1 for a, b in itertools.pairwise(recommendations) if a != b)
    assert formula_changes > 100, "a policy that followed the formula would flap"
    counts = _drive(policy, rates)
    # Up to the noise's ceiling as soon as it shows, then steady.
    assert counts[-1] == 6
    assert sum(1 for a, b in itertools.pairwise(counts) if a != b) <= 1
