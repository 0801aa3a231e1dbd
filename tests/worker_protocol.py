"""The filter front's worker protocol, checked the same way over XML-RPC and Pyro4.

Each protocol test module passes a raw proxy of a front with no worker (the test plays
the workers); XML-RPC returns leases as lists, Pyro4 as tuples, so leases are compared
as tuples.
"""

from __future__ import annotations

import time
from typing import Any

import pytest


def leases(batch: list[Any]) -> list[tuple[str, str]]:
    """A worker_exchange reply as (task id, text) pairs."""
    return [tuple(lease) for lease in batch]


def check_a_restarted_workers_tasks_are_requeued(front: Any, secret: str) -> None:
    """A worker that registers again under its id gives its leases back; the late
    answer of its old incarnation is a duplicate and ignored."""
    ids = front.submit_many(["a tonto", "b tonto"])
    assert front.worker_register("w1", secret) == pytest.approx(1.0)
    leased = leases(front.worker_exchange("w1", secret, {}, 10, 1))
    assert sorted(task_id for task_id, _ in leased) == sorted(ids)
    # w1 is killed and restarts under the same id: what it held is queued again.
    front.worker_register("w1", secret)
    front.worker_register("w2", secret)
    again = leases(front.worker_exchange("w2", secret, {}, 10, 1))
    again += leases(front.worker_exchange("w2", secret, {}, 10, 1))  # w2's fair share was half
    assert sorted(again) == sorted(leased)
    results = {task_id: text.replace("tonto", "CENSORED") for task_id, text in again}
    assert front.worker_exchange("w2", secret, results, 10, 0) == []
    front.worker_leave("w1", secret, {ids[0]: "late duplicate"})
    assert front.wait_results(ids, 5) == {ids[0]: "a CENSORED", ids[1]: "b CENSORED"}
    assert front.wait_results(ids, 0) == {}, "each result is handed out once"
    assert front.result(ids[0]) == ""


def check_a_silent_workers_tasks_are_requeued(front: Any, secret: str) -> None:
    """A worker silent for three heartbeat intervals loses its leases to one that beats."""
    [task_id] = front.submit_many(["silent tonto"])
    front.worker_register("silent", secret)
    leased = leases(front.worker_exchange("silent", secret, {}, 10, 1))
    assert leased == [(task_id, "silent tonto")]
    front.worker_register("alive", secret)
    redelivered: list[tuple[str, str]] = []
    deadline = time.monotonic() + 10
    while not redelivered and time.monotonic() < deadline:
        front.worker_heartbeat("alive", secret)
        redelivered = leases(front.worker_exchange("alive", secret, {}, 10, 1))
    assert redelivered == [(task_id, "silent tonto")]
