"""Shared state of the n-node form, against the real Redis: the store, the broadcast
lease, counters, subscribers and the live nodes each node announces."""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import redis

from middlewares.broadcast import SubscriberSet
from middlewares.cluster.counters import NodeCounters
from middlewares.cluster.keys import Keys
from middlewares.cluster.lease import BroadcastLease, LeasedBroadcaster, RestartSafeLease
from middlewares.cluster.presence import read_live_nodes
from middlewares.cluster.store import RedisInsultStore, delete_shared_state
from middlewares.cluster.subscribers import RedisSubscriberRegistry
from middlewares.contract import LiveNode
from middlewares.direct.directory import NodeRegistry
from middlewares.settings import Settings
from tests.helpers import wait_for


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


# -- the direct middlewares' Redis pieces (the others: tests/unit/test_direct.py)


def test_subscribers_in_redis_are_shared_and_dropped_after_three_failures(
    client: redis.Redis, namespace: str
):
    node_a = RedisSubscriberRegistry(client, namespace)
    node_b = RedisSubscriberRegistry(client, namespace)
    assert node_a.add("PYRO:x@h:1") is True
    assert node_b.add("PYRO:x@h:1") is False, "one registry for every node"
    node_a.add("PYRO:y@h:2")
    assert sorted(node_b.addresses()) == ["PYRO:x@h:1", "PYRO:y@h:2"]
    assert node_a.record("PYRO:x@h:1", True, 3) is False
    assert node_b.record("PYRO:x@h:1", True, 3) is False, "the count survives a new broadcaster"
    assert node_a.record("PYRO:x@h:1", False, 3) is False, "a success resets it"
    assert [node_b.record("PYRO:x@h:1", True, 3) for _ in range(3)] == [False, False, True]
    assert node_a.addresses() == ["PYRO:y@h:2"]
    assert node_a.remove("PYRO:y@h:2") is True
    assert node_a.remove("PYRO:y@h:2") is False
    assert node_a.record("PYRO:y@h:2", True, 3) is False
    assert node_a.addresses() == [], "a late failure never brings a subscriber back"


def test_whichever_node_broadcasts_notifies_subscribers_of_every_node(
    client: redis.Redis, namespace: str
):
    delivered: list[tuple[object, str]] = []

    def notify(address: object, insult: str) -> None:
        if address == "dead":
            raise ConnectionRefusedError("gone")
        delivered.append((address, insult))

    node_a = SubscriberSet(notify, registry=RedisSubscriberRegistry(client, namespace))
    node_b = SubscriberSet(notify, registry=RedisSubscriberRegistry(client, namespace))
    node_a.add("alive")
    node_a.add("dead")
    for _ in range(3):
        node_b.broadcast("tonto")
    assert delivered == [("alive", "tonto")] * 3
    assert node_a.addresses() == ["alive"]
    node_a.close()
    node_b.close()


def test_a_resumed_counter_goes_on_from_the_published_count(client: redis.Redis, namespace: str):
    first = NodeCounters(client, namespace, "insult", "n1")
    first.increment(5)
    first.close()
    restarted = NodeCounters(client, namespace, "insult", "n1", resume=True)
    restarted.increment(2)
    restarted.close()
    assert NodeCounters.read(client, namespace, "insult") == {"n1": 7}


def test_a_restarted_node_does_not_renew_its_earlier_lives_lease(
    client: redis.Redis, namespace: str
):
    assert BroadcastLease(client, namespace, "n1", ttl=0.3).held()
    restarted = RestartSafeLease(client, namespace, "n1", ttl=0.3)
    assert restarted.held() is False
    restarted.release()
    assert client.get(Keys(namespace).lease) == b"n1", "not its lease to release yet"
    assert wait_for(restarted.held, 5), "it takes the lease once the earlier one expired"


def test_shared_state_is_deleted_by_namespace(client: redis.Redis, namespace: str):
    client.sadd(Keys(namespace).store, "tonto")
    client.hset(Keys(namespace).subscribers, "PYRO:x@h:1", 0)
    client.set(f"{namespace}-other:insults:store", "kept")
    try:
        delete_shared_state(Settings.from_env().with_changes(namespace=namespace))
        assert not client.exists(Keys(namespace).store, Keys(namespace).subscribers)
        assert client.exists(f"{namespace}-other:insults:store")
    finally:
        client.delete(f"{namespace}-other:insults:store")


# -- presence: the live nodes each node announces


def test_nodes_announce_their_host_and_withdraw_when_they_stop(client, settings) -> None:
    counters = NodeCounters(client, settings.namespace, "filter", "n1", host="10.1.2.3")
    other = NodeCounters(client, settings.namespace, "filter", "n2", host="10.1.2.4")
    assert read_live_nodes(settings, "filter") == [
        LiveNode("n1", "10.1.2.3"),
        LiveNode("n2", "10.1.2.4"),
    ]
    counters.close()
    assert read_live_nodes(settings, "filter") == [LiveNode("n2", "10.1.2.4")]
    other.close()
    assert read_live_nodes(settings, "filter") == []
