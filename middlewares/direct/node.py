"""What an InsultService node of the direct middlewares' n-node form holds and does,
from joining its master to leaving it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from middlewares.addresses import node_host
from middlewares.broadcast import SubscriberSet
from middlewares.cluster.client import connect
from middlewares.cluster.counters import NodeCounters
from middlewares.cluster.lease import LeasedBroadcaster, RestartSafeLease
from middlewares.cluster.store import RedisInsultStore
from middlewares.cluster.subscribers import RedisSubscriberRegistry
from middlewares.contract import MiddlewareError
from middlewares.core import load_default_insults
from middlewares.direct.directory import NodeMembership
from middlewares.direct.gate import RequestGate
from middlewares.direct.insult import Notifier, round_timeout
from middlewares.runtime import StopSignal
from middlewares.settings import Settings


@dataclass(frozen=True)
class InsultNode:
    """What an InsultService node of the n-node form holds: the shared store, the
    shared subscribers, its request gate (which counts what it serves) and its leased
    broadcaster."""

    node: str
    store: RedisInsultStore
    subscribers: SubscriberSet
    gate: RequestGate
    broadcaster: LeasedBroadcaster

    def serve(
        self, membership: NodeMembership, join_wait: float, stop: StopSignal, timeout: float
    ) -> None:
        """Join the master, broadcast while the lease is ours, and on ``stop`` leave
        gracefully: clients are sent elsewhere first, the broadcast lease is handed over
        (another node broadcasts at once), then the calls this node accepted are
        answered and later ones refused (their clients retry them on another node)."""
        try:
            membership.join(join_wait, stopping=stop.is_set)
        except MiddlewareError:
            if stop.is_set():
                return  # stopped before it ever served: a clean exit
            raise
        self.broadcaster.start()
        stop.wait()
        membership.leave()
        self.broadcaster.stop()
        self.gate.close(timeout)


@contextlib.contextmanager
def insult_node(settings: Settings, node: str, notifier: Notifier) -> Iterator[InsultNode]:
    """The shared state of InsultService node ``node``, in Redis, closed on exit."""
    namespace = settings.namespace
    interval = settings.broadcast_interval
    with contextlib.closing(connect(settings)) as client:
        store = RedisInsultStore(client, namespace, settings.limits)
        if settings.load_defaults:
            store.add_all(load_default_insults())
        counters = NodeCounters(
            client, namespace, "insult", node, resume=True, host=node_host(settings)
        )
        subscribers = SubscriberSet(
            notifier.notify,
            round_timeout=round_timeout(settings),
            registry=RedisSubscriberRegistry(client, namespace),
        )
        try:
            lease = RestartSafeLease(client, namespace, node, LeasedBroadcaster.lease_ttl(interval))
            yield InsultNode(
                node=node,
                store=store,
                subscribers=subscribers,
                gate=RequestGate(counters.increment),
                broadcaster=LeasedBroadcaster(
                    lease, interval, store.random, notifier.broadcast_to(subscribers)
                ),
            )
        finally:
            subscribers.close()
            counters.close()
