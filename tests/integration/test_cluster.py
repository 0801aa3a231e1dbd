"""Shared state of the n-node form, against the real Redis."""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import redis

from middlewares.cluster.counters import NodeCounters
from middlewares.cluster.keys import Keys
from middlewares.cluster.lease import BroadcastLease, LeasedBroadcaster
from middlewares.cluster.store import RedisInsultStore
from middlewares.direct.directory import NodeRegistry


def test_store_adds_atomically_across_concurrent_writers(client: redis.Redis, namespace: str):
    stores = [RedisInsultStore(client, namespace) for _ in range(8)]
    insults = [f"Insult {n}" for n in range(100)]
    with ThreadPoolExecutor(8) as pool:
        added = list(pool.map(lambda s: sum(s.add(i) for i in insults), stores))
    assert sum(added) == 100
    assert stores[0].all() == sorted(i.lower() for i in insults)
    assert client.scard(Keys(namespace).store) == 100
    assert stores[0].random() in stores[0].all()


def test_empty_store_gives_an_empty_random_insult(client: redis.Redis, namespace: str):
    store = RedisInsultStore(client, namespace)
    assert store.random() == ""
    store.add_all(["Tonto", "feo", "tonto"])
    assert store.all() == ["feo", "tonto"]


def test_exactly_one_node_holds_the_broadcast_lease(client: redis.Redis, namespace: str):
    leases = [BroadcastLease(client, namespace, f"node-{n}", ttl=0.3) for n in range(3)]
    holders = [lease.held() for lease in leases]
    assert holders == [True, False, False]
    assert leases[0].held() is True, "the holder renews"
    assert [lease.held() for lease in leases[1:]] == [False, False]


def test_lease_passes_on_when_the_holder_stops_renewing(client: redis.Redis, namespace: str):
    first, second = (BroadcastLease(client, namespace, n, ttl=0.2) for n in ("a", "b"))
    assert first.held()
    deadline = time.monotonic() + 2
    while not second.held():
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.02)
    assert first.held() is False


def test_released_lease_is_taken_at_once(client: redis.Redis, namespace: str):
    first, second = (BroadcastLease(client, namespace, n, ttl=30) for n in ("a", "b"))
    assert first.held()
    first.release()
    assert second.held()
    first.release()  # not the holder any more: must not steal the lease back
    assert second.held()


def test_node_counters_are_flushed_and_read_per_node(client: redis.Redis, namespace: str):
    counters = [NodeCounters(client, namespace, "filter", f"n{i}", 0.05) for i in range(2)]
    counters[0].increment(5)
    counters[1].increment()
    for counter in counters:
        counter.close()
    assert NodeCounters.read(client, namespace, "filter") == {"n0": 5, "n1": 1}
    assert client.exists(Keys(namespace).counters("filter"))


def test_registry_rotates_over_live_nodes_and_drops_silent_ones():
    registry = NodeRegistry(heartbeat=0.05, missed=3)
    registry.register("a", "http://a")
    registry.register("b", "http://b")
    firsts = {registry.nodes()[0] for _ in range(4)}
    assert firsts == {"http://a", "http://b"}
    deadline = time.monotonic() + 2
    while len(registry.nodes()) == 2:
        assert registry.heartbeat("a")
        assert time.monotonic() < deadline, "silent node never dropped"
        time.sleep(0.02)
    assert registry.nodes() == ["http://a"]
    assert registry.heartbeat("b") is False, "a dropped node must register again"
    assert registry.remove("a") and registry.nodes() == []


def test_exactly_one_leased_broadcaster_sends_and_another_takes_over(
    client: redis.Redis, namespace: str
):
    interval = 0.2
    sent: list[tuple[float, str]] = []
    nodes = [
        LeasedBroadcaster(
            BroadcastLease(client, namespace, f"n{n}", LeasedBroadcaster.lease_ttl(interval)),
            interval,
            lambda n=n: f"from n{n}",
            lambda insult: sent.append((time.monotonic(), insult)),
        )
        for n in range(3)
    ]
    for node in nodes:
        node.start()
    deadline = time.monotonic() + 5
    while len(sent) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len({insult for _, insult in sent}) == 1, "only the lease holder broadcasts"
    holder = next(n for n in range(3) if sent[0][1] == f"from n{n}")
    # Kill the holder without releasing: its broadcaster just stops ticking.
    nodes[holder]._stopped.set()
    killed_at = time.monotonic()
    while not any(t > killed_at and i != sent[0][1] for t, i in sent):
        assert time.monotonic() < killed_at + 5, "no node took over"
        time.sleep(0.01)
    takeover = next(t for t, i in sent if t > killed_at and i != sent[0][1]) - killed_at
    assert takeover <= 2 * interval + 0.1
    for node in nodes:
        node.stop()
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= 0.6 * interval
