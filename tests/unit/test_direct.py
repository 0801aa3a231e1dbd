"""The direct middlewares' n-node pieces (middlewares.direct), without any transport.

Links are fakes here; the pieces that keep their state in Redis are tested in
tests/integration/test_cluster.py, and the Pyro4 and XML-RPC forms built on them end to
end in tests/integration/test_nodes.py and their protocol tests.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from middlewares.contract import BrokerUnavailable, ServiceError
from middlewares.core import ResultLog
from middlewares.direct import pool as pool_module
from middlewares.direct.directory import NODE_HEARTBEAT, NodeDirectory, StartupBarrier
from middlewares.direct.gate import NodeLeaving, RequestGate
from middlewares.direct.pool import NodePool
from middlewares.direct.queue import TaskQueue
from tests.helpers import wait_for


class FakeNodes:
    """Links to fake nodes: records which node served each call; some are dead."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.dead: set[str] = set()
        self.served: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self.closed: list[str] = []
        self.refusal: Exception | None = None

    def resolve(self) -> list[str]:
        return list(self.addresses)

    def connect(self, address: str) -> FakeLink:
        return FakeLink(self, address)


class FakeLink:
    def __init__(self, nodes: FakeNodes, address: str) -> None:
        self._nodes = nodes
        self._address = address

    def call(self, method: str, *args: Any, wait: float = 0.0) -> Any:
        self._nodes.attempts[self._address] += 1
        if self._address in self._nodes.dead:
            raise BrokerUnavailable(self._address, "connection refused")
        if self._nodes.refusal is not None:
            raise self._nodes.refusal
        self._nodes.served[self._address] += 1
        return self._address

    def connect(self) -> None:
        self.call("connect")

    def local_address(self) -> str:
        return "127.0.0.1"

    def close(self) -> None:
        self._nodes.closed.append(self._address)


def pool_of(nodes: FakeNodes, timeout: float = 5.0, failover: bool = True) -> NodePool:
    return NodePool(nodes.resolve, nodes.connect, timeout, "master", failover=failover)


def test_calls_go_round_robin_over_the_nodes():
    nodes = FakeNodes("a", "b", "c")
    pool = pool_of(nodes)
    for _ in range(30):
        pool.call("random_insult")
    assert nodes.served == {"a": 10, "b": 10, "c": 10}


def test_a_dead_node_costs_no_call_and_is_tried_last_for_a_while():
    nodes = FakeNodes("a", "b", "c")
    nodes.dead.add("b")
    pool = pool_of(nodes)
    assert all(pool.call("random_insult") in {"a", "c"} for _ in range(30))
    assert nodes.attempts["b"] == 1, "once found dead, the node is skipped"
    assert "b" in nodes.closed
    assert nodes.served["a"] + nodes.served["c"] == 30


def test_a_refusal_by_a_live_node_is_not_retried():
    nodes = FakeNodes("a", "b")
    nodes.refusal = ServiceError("insult is empty")
    pool = pool_of(nodes)
    with pytest.raises(ServiceError, match="empty"):
        pool.call("add_insult", "")
    assert sum(nodes.attempts.values()) == 1


def test_a_call_waits_for_the_replacement_of_its_only_node():
    nodes = FakeNodes("a")
    pool = pool_of(nodes)
    pool.call("random_insult")
    nodes.dead.add("a")
    # The node is restarted: its new incarnation registers at a new address.
    threading.Timer(0.3, lambda: setattr(nodes, "addresses", ["a2"])).start()
    assert pool.call("random_insult") == "a2"


def test_a_call_gives_up_after_its_timeout_when_no_node_answers():
    nodes = FakeNodes("a", "b")
    nodes.dead.update({"a", "b"})
    pool = pool_of(nodes, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="connection refused"):
        pool.call("random_insult")
    assert 0.3 <= time.monotonic() - started < 3


def test_an_empty_node_list_is_a_clear_error():
    pool = pool_of(FakeNodes(), timeout=0.2)
    with pytest.raises(BrokerUnavailable, match="no live node"):
        pool.connect()


def test_without_failover_the_first_error_is_raised():
    nodes = FakeNodes("service")
    nodes.dead.add("service")
    pool = pool_of(nodes, failover=False)
    with pytest.raises(BrokerUnavailable):
        pool.call("random_insult")
    assert nodes.attempts["service"] == 1


def test_the_node_list_is_refreshed_so_joined_nodes_get_calls(monkeypatch):
    monkeypatch.setattr(pool_module, "NODE_REFRESH", 0.0)
    nodes = FakeNodes("a", "b")
    pool = pool_of(nodes)
    pool.call("random_insult")
    nodes.addresses = ["b", "c"]
    for _ in range(10):
        pool.call("random_insult")
    assert nodes.served["c"] == 5
    assert "a" in nodes.closed, "the link to a node no longer listed is closed"


def test_a_failing_master_leaves_the_known_nodes_in_use(monkeypatch):
    monkeypatch.setattr(pool_module, "NODE_REFRESH", 0.0)
    nodes = FakeNodes("a", "b")
    healthy = nodes.resolve

    def resolve() -> list[str]:
        if nodes.served:
            raise BrokerUnavailable("master", "gone")
        return healthy()

    pool = NodePool(resolve, nodes.connect, 5.0, "master")
    for _ in range(4):
        pool.call("random_insult")
    assert nodes.served == {"a": 2, "b": 2}


def test_the_gate_refuses_new_requests_and_waits_for_those_in_flight():
    served: list[int] = []
    gate = RequestGate(lambda: served.append(1))
    entered, release = threading.Event(), threading.Event()

    def slow_request() -> None:
        with gate.admit():
            entered.set()
            release.wait(5)

    worker = threading.Thread(target=slow_request)
    worker.start()
    assert entered.wait(5)
    threading.Timer(0.2, release.set).start()
    started = time.monotonic()
    assert gate.close(timeout=5) == 0
    assert time.monotonic() - started >= 0.15, "close waited for the request in flight"
    with pytest.raises(NodeLeaving), gate.admit():
        pass
    worker.join()
    assert served == [1]


def test_the_gate_gives_up_waiting_after_its_timeout():
    gate = RequestGate()
    with gate.admit():
        assert gate.close(timeout=0.05) == 1


def test_the_directory_lists_live_nodes_and_checks_its_arguments():
    def check_address(value: object) -> str:
        if not isinstance(value, str) or not value.startswith("node:"):
            raise ValueError(f"bad address {value!r}")
        return value

    secret = "s3cret"
    directory = NodeDirectory(check_address, secret, expected_nodes=2)
    assert directory.register("n1", secret, "node:1") == NODE_HEARTBEAT
    assert directory.nodes() == [], "nothing is listed until both nodes have arrived"
    directory.register("n2", secret, "node:2")
    assert sorted(directory.nodes()) == ["node:1", "node:2"]
    assert {directory.nodes()[0] for _ in range(4)} == {"node:1", "node:2"}, "rotated"
    assert directory.heartbeat("n1", secret) is True
    assert directory.deregister("n1", secret) is True
    assert directory.heartbeat("n1", secret) is False, "a forgotten node must register again"
    assert directory.nodes() == ["node:2"]
    for bad_id in ["", 7, None, "x" * 101]:
        with pytest.raises(ValueError, match="node id"):
            directory.register(bad_id, secret, "node:3")
    with pytest.raises(ValueError, match="bad address"):
        directory.register("n3", secret, "elsewhere")


def test_a_startup_barrier_opens_on_arrivals_or_after_its_grace():
    barrier = StartupBarrier(expected=2, grace=60)
    assert barrier.arrive("a") is False
    assert barrier.arrive("a") is False, "the same node arriving twice counts once"
    assert barrier.arrive("b") is True
    assert barrier.is_open()
    late = StartupBarrier(expected=5, grace=0.1)
    assert late.arrive("a") is False
    assert wait_for(late.is_open, 5), "it opens after its grace without the others"
    assert StartupBarrier().is_open(), "expecting nobody, it is open at once"


def test_a_queue_expecting_workers_leases_nothing_until_they_came():
    queue = TaskQueue(ResultLog(10), expected_workers=2)
    ids = queue.submit(["one", "two"])
    queue.register("first")
    assert queue.exchange("first", {}, 10, 0.05) == []
    queue.register("second")
    assert [task for task, _ in queue.exchange("first", {}, 10, 0)] == ids[:1], "its share"
