"""How the master measures: lambda from conservation, workers' counters, exactly-once tally."""

from __future__ import annotations

from collections import Counter

import pytest

from dynamic.load import Tally
from dynamic.meter import ArrivalMeter, RateSince, Reading
from dynamic.stats import AckCounter
from middlewares.rabbitmq.transport import WorkerReport


def reading(time: float, ready: int = 0, unacked: int = 0, acked: float = 0) -> Reading:
    return Reading(time=time, ready=ready, unacked=unacked, acked=acked, consumers=1)


def test_lambda_is_backlog_growth_plus_acknowledgements_per_second():
    meter = ArrivalMeter()
    assert meter.update(reading(10.0, ready=5, unacked=2, acked=100)) == 0.0
    # Two seconds later: backlog 7 -> 27 and 60 more acked: 80 arrivals in 2 s.
    assert meter.update(reading(12.0, ready=20, unacked=7, acked=160)) == pytest.approx(40.0)
    # The queue drains faster than tasks come: backlog falls by 27, 47 acked, in 1 s.
    assert meter.update(reading(13.0, acked=207)) == pytest.approx(20.0)


def test_lambda_never_goes_negative_when_tasks_vanish():
    meter = ArrivalMeter()
    meter.update(reading(0.0, ready=500))
    # An operator purged the queue: 500 gone, nothing acked.
    assert meter.update(reading(1.0)) == 0.0


def test_lambda_ignores_a_clock_that_did_not_move():
    meter = ArrivalMeter()
    meter.update(reading(5.0, acked=10))
    assert meter.update(reading(5.0, acked=20)) == 0.0


def test_rate_since_reports_growth_between_calls():
    now = [0.0]
    count = [0.0]
    rate = RateSince(lambda: count[0], lambda: now[0])
    assert rate() == 0.0
    now[0], count[0] = 2.0, 50.0
    assert rate() == pytest.approx(25.0)
    now[0], count[0] = 3.0, 60.0
    assert rate() == pytest.approx(10.0)


def test_ack_counter_interpolates_each_worker_to_the_moment():
    counter = AckCounter()
    counter.add(WorkerReport("a", acked=10, time=100.0))
    counter.add(WorkerReport("a", acked=20, time=100.1))
    counter.add(WorkerReport("b", acked=0, time=100.05))
    counter.add(WorkerReport("b", acked=4, time=100.15))
    # a: halfway from 10 to 20; b: a quarter of the way from 0 to 4.
    assert counter.acked_at(100.05) == pytest.approx(15 + 0)
    assert counter.acked_at(100.075) == pytest.approx(17.5 + 1)


def test_ack_counter_uses_the_nearest_report_outside_the_reports():
    counter = AckCounter()
    counter.add(WorkerReport("a", acked=10, time=100.0))
    counter.add(WorkerReport("a", acked=20, time=100.1))
    assert counter.acked_at(99.0) == 10
    assert counter.acked_at(101.0) == 20


def test_ack_counter_knows_who_has_not_reported_past_a_moment():
    counter = AckCounter()
    counter.add(WorkerReport("a", acked=1, time=100.0))
    counter.add(WorkerReport("b", acked=1, time=100.2))
    counter.add(WorkerReport("c", acked=1, time=99.0, final=True))
    assert counter.lagging(100.1) == ["a"]
    assert counter.live() == 3


def test_exited_workers_keep_counting_in_one_total():
    counter = AckCounter(silence=2.0)
    counter.add(WorkerReport("gone", acked=70, time=100.0, final=True))
    counter.add(WorkerReport("crashed", acked=30, time=100.0))
    counter.add(WorkerReport("alive", acked=5, time=103.0))
    counter.retire_silent(now=103.0)
    assert counter.live() == 1
    assert counter.acked_at(103.0) == 105


def test_ack_counter_ignores_reports_out_of_order():
    counter = AckCounter()
    counter.add(WorkerReport("a", acked=20, time=100.1))
    counter.add(WorkerReport("a", acked=10, time=100.0))
    assert counter.acked_at(100.1) == 20


def test_ack_counter_memory_is_bounded_per_worker():
    counter = AckCounter()
    for n in range(10_000):
        counter.add(WorkerReport("a", acked=n, time=float(n)))
    assert counter.acked_at(9_999.0) == 9_999
    assert counter.acked_at(0.0) > 0, "only the newest reports are kept"


def test_reports_round_trip_and_bad_ones_are_named():
    report = WorkerReport("host:42", acked=7, time=1.5, final=True)
    assert WorkerReport.decode(report.encode()) == report
    for body in (b"not json", b'{"worker": "a"}', b'{"worker": "a", "acked": -1, "time": 1}'):
        with pytest.raises(ValueError, match="bad worker report"):
            WorkerReport.decode(body)


def test_tally_counts_lost_duplicated_and_foreign_answers():
    sent = ["t-0", "t-1", "t-2", "t-3"]
    answers = Counter({"t-0": 1, "t-1": 2, "t-3": 1, "other": 1})
    tally = Tally.of(sent, answers)
    assert (tally.published, tally.answered, tally.lost, tally.duplicated, tally.unexpected) == (
        4,
        3,
        1,
        1,
        1,
    )
    assert not tally.exactly_once
    assert Tally.of(sent, Counter(dict.fromkeys(sent, 1))).exactly_once
