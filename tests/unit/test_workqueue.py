"""The direct middlewares' work queue (middlewares.direct.queue), without any transport."""

from __future__ import annotations

import threading
import time

import pytest

from middlewares.core import ResultLog
from middlewares.direct.checks import check_id, check_list, check_seconds
from middlewares.direct.queue import QueueFull, TaskQueue


def make_queue(**limits: float) -> TaskQueue:
    return TaskQueue(ResultLog(10), **limits)


def test_no_worker_is_leased_more_than_its_share_of_the_queue():
    queue = make_queue()
    queue.submit([f"t{n}" for n in range(10)])
    queue.register("a")
    queue.register("b")
    assert len(queue.exchange("a", {}, 64, 0)) == 5, "half the queue for one of two workers"
    assert len(queue.exchange("b", {}, 64, 0)) == 3, "half of what is left"
    assert len(queue.exchange("b", {}, 1, 0)) == 1, "never more than asked for"


def test_expired_leases_go_back_first_and_a_task_keeps_one_result():
    queue = make_queue(lease_timeout=0)
    first, second = queue.submit(["one", "two"])
    queue.register("dead")
    assert queue.exchange("dead", {}, 1, 0) == [(first, "one")]
    queue.requeue_silent_workers()
    assert queue.exchange("alive", {}, 1, 0) == [(first, "one")], "re-queued at the head"
    queue.exchange("alive", {first: "ONE"}, 1, 0)
    queue.leave("dead", {first: "duplicate"})
    assert queue.collect([first, second], 0) == {first: "ONE"}
    assert queue.collect([first], 0) == {}, "handed out once"


def test_a_worker_registering_again_gives_back_what_its_predecessor_held():
    queue = make_queue()
    ids = queue.submit(["a", "b"])
    queue.register("w")
    assert len(queue.exchange("w", {}, 10, 0)) == 2
    queue.register("w")  # the same id after a restart
    assert [task_id for task_id, _ in queue.exchange("w", {}, 10, 0)] == ids
    assert queue.outstanding() == 2


def test_work_beyond_the_bound_is_refused_and_old_uncollected_results_go():
    queue = make_queue(max_outstanding=2, max_uncollected=2)
    ids = queue.submit(["a", "b"])
    with pytest.raises(QueueFull, match="full"):
        queue.submit(["c"])
    queue.exchange("w", {}, 2, 0)
    queue.exchange("w", {ids[0]: "A", ids[1]: "B"}, 2, 0)
    third = queue.submit(["c"])
    queue.exchange("w", {}, 1, 0)
    queue.exchange("w", {third[0]: "C"}, 1, 0)
    assert queue.collect([*ids, *third], 0) == {ids[1]: "B", third[0]: "C"}


def test_a_waiting_client_wakes_as_soon_as_its_result_is_in():
    queue = make_queue()
    [task_id] = queue.submit(["text"])
    queue.exchange("w", {}, 1, 0)
    threading.Timer(0.2, queue.exchange, ["w", {task_id: "TEXT"}, 1, 0]).start()
    started = time.monotonic()
    assert queue.collect([task_id], 30) == {task_id: "TEXT"}
    assert time.monotonic() - started < 10


def test_a_waiting_worker_wakes_as_soon_as_work_comes():
    queue = make_queue()
    queue.register("w")
    threading.Timer(0.2, queue.submit, [["late"]]).start()
    started = time.monotonic()
    assert [text for _, text in queue.exchange("w", {}, 5, 30)] == ["late"]
    assert time.monotonic() - started < 10


def test_a_closing_queue_releases_waiting_workers_at_once():
    queue = make_queue()
    queue.register("w")
    threading.Timer(0.2, queue.close).start()  # while the pull below waits for work
    started = time.monotonic()
    assert queue.exchange("w", {}, 10, 30) == []
    assert time.monotonic() - started < 10, "the pull kept waiting after close()"
    assert queue.exchange("w", {}, 10, 30) == [], "a later pull does not wait either"


def test_a_leaving_worker_hands_in_results_and_its_leftovers_are_queued_again():
    queue = make_queue()
    first, second = queue.submit(["one", "two"])
    queue.register("w")
    queue.exchange("w", {}, 2, 0)
    queue.leave("w", {first: "ONE"})
    assert queue.wait_for_workers_to_leave(0) == 0
    assert queue.collect([first], 0) == {first: "ONE"}
    assert queue.exchange("other", {}, 2, 0) == [(second, "two")]


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (check_list, "text", "must be a list"),
        (check_list, ["x"] * 10_001, "over the limit"),
        (check_id, "", "non-empty string"),
        (check_id, "x" * 101, "at most 100"),
        (check_seconds, True, "number of seconds"),
        (check_seconds, 61, "between 0 and 60"),
    ],
)
def test_argument_checks_name_the_problem(check, value, message):
    with pytest.raises(ValueError, match=message):
        check(value, "x")
