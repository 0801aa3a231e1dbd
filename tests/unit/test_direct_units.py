"""The pieces behind the direct middlewares' fault tolerance, without any broker: the
connection table, the queue's leases, ids and journal, the client's resubmission, the
broadcast lanes, and the Pyro4 client's timeouts."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping, Sequence

import pytest

from middlewares.broadcast import SubscriberSet
from middlewares.contract import BrokerUnavailable
from middlewares.core import ResultLog
from middlewares.direct.checks import BATCH_CHARS
from middlewares.direct.client import FrontClient
from middlewares.direct.connections import ConnectionTable, Evicted, ServerBusy
from middlewares.direct.front import QueueFront
from middlewares.direct.queue import TaskQueue
from middlewares.pyro.clients import Remote
from middlewares.settings import Settings
from tests.helpers import wait_for

# -- the connection table ----------------------------------------------------------------


def pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair: the server's end, and the client's to see it closed."""
    server, client = socket.socketpair()
    client.settimeout(5)
    return server, client


def test_a_full_table_closes_the_longest_idle_and_never_a_busy_one():
    table = ConnectionTable(max_connections=2)
    (first, first_client), (second, _), (third, _) = pair(), pair(), pair()
    table.admit(first)
    table.admit(second)
    table.begin(second)
    table.admit(third)  # full: the longest idle, first, makes room
    assert first_client.recv(1) == b""
    with pytest.raises(Evicted):
        table.begin(first)  # closed to make room: its request must not run
    table.begin(third)
    with pytest.raises(ServerBusy):
        table.admit(pair()[0])  # both places run calls
    table.end(second)
    table.admit(pair()[0])  # second waits again: it makes room


def test_connections_that_wait_too_long_are_closed_at_the_next_admission():
    table = ConnectionTable(idle_timeout=0.05)
    stale, stale_client = pair()
    table.admit(stale)
    time.sleep(0.1)
    table.admit(pair()[0])
    assert stale_client.recv(1) == b""
    assert stale not in table.connections()


def test_the_byte_budget_refuses_one_more_big_request_but_always_fits_one():
    table = ConnectionTable(max_bytes=200_000)
    table.reserve(300_000)  # alone, even one over the budget fits
    with pytest.raises(ServerBusy):
        table.reserve(100_000)
    table.reserve(100)  # small ones are not counted
    table.release(300_000)
    table.reserve(100_000)
    table.reserve(100_000)


# -- the queue ---------------------------------------------------------------------------


def test_only_the_worker_holding_a_lease_can_hand_in_its_result():
    queue = TaskQueue(ResultLog(10))
    [task_id] = queue.submit(["text"])
    queue.register("holder")
    queue.register("thief")
    assert queue.exchange("holder", {}, 1, 0) == [(task_id, "text")]
    queue.exchange("thief", {task_id: "FORGED"}, 1, 0)
    assert queue.collect([task_id], 0) == {}
    queue.exchange("holder", {task_id: "TEXT"}, 1, 0)
    assert queue.collect([task_id], 0) == {task_id: "TEXT"}


def test_task_ids_are_unguessable():
    ids = TaskQueue(ResultLog(10)).submit(["t"] * 1000)
    assert len(set(ids)) == 1000
    assert min(len(task_id) for task_id in ids) >= 22  # 128 random bits
    assert len({task_id[:4] for task_id in ids}) > 500, "no shared prefix or counter"


def test_a_resubmitted_id_is_queued_once_and_unknown_ids_are_named():
    queue = TaskQueue(ResultLog(10))
    assert queue.submit_tasks({"a" * 22: "one", "b" * 22: "two"}) == 2
    assert queue.submit_tasks({"a" * 22: "one"}) == 0, "held already"
    assert queue.collect_known(["a" * 22, "c" * 22], 0) == ({}, ["c" * 22])
    assert queue.outstanding() == 2


def test_leases_and_replies_stay_within_the_batch_characters():
    queue = TaskQueue(ResultLog(10))
    big = "x" * (BATCH_CHARS // 2 + 1)
    ids = queue.submit([big, big, big])
    results: dict[str, str] = {}
    for _ in range(3):
        lease = queue.exchange("w", results, 64, 0)
        assert len(lease) == 1, "two would pass BATCH_CHARS"
        results = dict(lease)
    queue.exchange("w", results, 64, 0)
    assert len(queue.collect(ids, 0)) == 1
    assert len(queue.collect(ids, 0)) == 1
    assert len(queue.collect(ids, 0)) == 1


class FakeJournal:
    def __init__(self, kept: Mapping[str, str] | None = None) -> None:
        self.kept = dict(kept or {})

    def add(self, tasks: Mapping[str, str]) -> None:
        self.kept.update(tasks)

    def remove(self, task_ids: Sequence[str]) -> None:
        for task_id in task_ids:
            self.kept.pop(task_id, None)

    def load(self) -> dict[str, str]:
        return dict(self.kept)


def test_a_journaled_task_survives_until_collected_and_a_restart_queues_it_again():
    journal = FakeJournal()
    queue = TaskQueue(ResultLog(10), journal=journal)
    first, second = queue.submit(["one", "two"])
    queue.exchange("w", {}, 1, 0)
    queue.exchange("w", {first: "ONE"}, 1, 0)
    assert queue.collect([first], 0) == {first: "ONE"}
    assert journal.kept == {second: "two"}, "collected tasks leave the journal"
    restarted = TaskQueue(ResultLog(10), journal=journal)
    assert restarted.exchange("w", {}, 10, 0) == [(second, "two")]


def test_worker_calls_need_the_deployment_secret():
    front = QueueFront(TaskQueue(ResultLog(10)), ResultLog(10), Settings(), "s3cret")
    with pytest.raises(PermissionError, match="deployment secret"):
        front.worker_register("w", "guess")
    with pytest.raises(PermissionError):
        front.worker_exchange("w", None, {}, 1, 0)
    assert front.worker_register("w", "s3cret") > 0


# -- the client survives a restarted front -----------------------------------------------


class FakeFront:
    """A front behind a link: ``restart()`` loses its queue, ``down`` refuses calls."""

    def __init__(self) -> None:
        self.restart()
        self.down = 0

    def restart(self) -> None:
        self.queue = TaskQueue(ResultLog(10))
        self.front = QueueFront(self.queue, ResultLog(10), Settings(), "s")

    def call(self, method: str, *args: object, wait: float = 0.0) -> object:
        if self.down:
            self.down -= 1
            raise BrokerUnavailable("fake://front", "restarting")
        return getattr(self.front, method)(*args)

    def close(self) -> None:
        pass


def test_a_client_submits_again_what_a_restarted_front_lost_and_answers_each_once():
    fake = FakeFront()
    client = FrontClient(fake, Settings(timeout=5), chunk_chars=1000)
    ids = client.submit_many(["a tonto", "b tonto"])
    fake.queue.exchange("w", {}, 10, 0)
    fake.queue.exchange("w", {ids[0]: "a CENSORED"}, 10, 0)
    assert client.wait(ids, 0) == {ids[0]: "a CENSORED"}
    fake.restart()
    fake.down = 3  # refused a few times while it restarts
    assert client.wait(ids, 0) == {}, "the front lost ids[1]: submitted again"
    assert fake.queue.exchange("w", {}, 10, 0) == [(ids[1], "b tonto")]
    fake.queue.exchange("w", {ids[1]: "b CENSORED"}, 10, 0)
    assert client.wait(ids, 0) == {ids[1]: "b CENSORED"}
    assert client.wait(ids, 0) == {}


# -- broadcast lanes ---------------------------------------------------------------------


def test_hung_subscribers_do_not_delay_one_that_answers():
    release = threading.Event()
    received: list[str] = []

    def notify(address: object, insult: str) -> None:
        if address == "healthy":
            received.append(insult)
        elif not release.wait(0.3):
            raise TimeoutError("hung")

    subscribers = SubscriberSet(notify, round_timeout=0.01, threads=2)
    subscribers.add("healthy")
    subscribers.broadcast("first")
    assert wait_for(lambda: received == ["first"], 5)
    for n in range(40):
        subscribers.add(f"hung-{n}")
    for round_ in range(3):
        subscribers.broadcast(f"round {round_}")
        assert wait_for(lambda r=round_: f"round {r}" in received, 1), "not behind the hung"
    assert wait_for(lambda: subscribers.addresses() == ["healthy"], 10)
    subscribers.close()


# -- the Pyro4 client's timeouts -----------------------------------------------------------


class _TimedProxy:
    """A connected proxy that records each change of its timeout and echoes calls."""

    def __init__(self, timeout: float) -> None:
        self.timeouts = [timeout]

    @property
    def _pyroTimeout(self) -> float:
        return self.timeouts[-1]

    @_pyroTimeout.setter
    def _pyroTimeout(self, value: float) -> None:
        self.timeouts.append(value)

    def filter(self, text: str) -> str:
        return text


def test_every_pyro_call_has_a_timeout_covering_its_wait_set_only_when_it_changes(
    monkeypatch: pytest.MonkeyPatch,
):
    remote = Remote(Settings(timeout=10), "PYRO:obj@127.0.0.1:1", "hint")
    proxy = _TimedProxy(10)
    monkeypatch.setattr(remote, "_connected", lambda: proxy)
    remote.call("filter", "a", wait=9.5)
    remote.call("filter", "b", wait=9.2)
    remote.call("filter", "c", wait=1)
    remote.call("filter", "d")
    assert proxy.timeouts == [10, 20, 11, 10], "timeout + wait in whole seconds, once each"
