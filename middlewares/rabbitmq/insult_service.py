"""The RabbitMQ InsultService process: ``python -m middlewares.rabbitmq.insult_service``.

It answers JSON requests from ``<ns>.insults.requests`` and, every broadcast interval,
publishes a random insult to the fanout exchange ``<ns>.insults.broadcast``.

With ``--node-id`` it is one node of the n-node form: any number of such processes
consume the request queue side by side (the broker spreads the requests), serve one
insult set in Redis, broadcast only while holding the deployment's broadcast lease, and
count the requests each one answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import redis

from middlewares.broadcast import Broadcaster
from middlewares.cluster.client import connect
from middlewares.cluster.counters import NodeCounters, node_counter
from middlewares.cluster.lease import LeasedBroadcaster, RestartSafeLease
from middlewares.cluster.store import RedisInsultStore
from middlewares.core import InsultStore, load_default_insults
from middlewares.rabbitmq.rpc import RpcServer
from middlewares.rabbitmq.transport import (
    RPC_PREFETCH,
    Names,
    declare_broadcast_exchange,
    quiet_pika,
)
from middlewares.runtime import ServiceProcess, service_main
from middlewares.service import InsultOps, InsultService, error_reply
from middlewares.settings import Settings

log = logging.getLogger(__name__)

#: Requests a node of the n-node form holds unacknowledged. Enough to keep a node busy
#: while its acknowledgement travels to the broker, few enough that a backlog is shared
#: out request by request rather than in large blocks (and that a killed node leaves
#: little to redeliver).
NODE_PREFETCH = 4


def open_store(settings: Settings, shared: redis.Redis | None = None) -> InsultOps:
    """The store this process serves from: in-process for the one-node form, the Redis set
    of the namespace (``shared``) for a node of the n-node form."""
    defaults = load_default_insults() if settings.load_defaults else ()
    if shared is None:
        return InsultStore(defaults, settings.limits)
    store = RedisInsultStore(shared, settings.namespace, settings.limits)
    # Every node adds the defaults when it starts: SADD makes that idempotent.
    store.add_all(defaults)
    return store


@contextmanager
def _shared_redis(settings: Settings, node: str | None) -> Iterator[redis.Redis | None]:
    """A node's connection to the shared state; None in the one-node form."""
    if node is None:
        yield None
        return
    client = connect(settings)
    try:
        yield client
    finally:
        client.close()


def make_broadcaster(
    settings: Settings,
    node: str | None,
    shared: redis.Redis | None,
    store: InsultOps,
    send: Callable[[str], None],
) -> Broadcaster | LeasedBroadcaster:
    """The one-node form broadcasts by itself; a node only while it holds the lease.

    A restarted node (same id) may find the lease of its earlier life still naming it;
    RestartSafeLease waits for that one to expire, so the broadcast keeps its interval.
    """
    interval = settings.broadcast_interval
    if node is None or shared is None:
        return Broadcaster(interval, store.random, send)
    lease = RestartSafeLease(
        shared, settings.namespace, node, LeasedBroadcaster.lease_ttl(interval)
    )
    return LeasedBroadcaster(lease, interval, store.random, send)


def serve(process: ServiceProcess) -> None:
    """Serve until SIGINT or SIGTERM."""
    settings, node = process.settings, process.node_id
    quiet_pika()
    names = Names(settings.namespace)
    with ExitStack() as cleanup:
        shared = cleanup.enter_context(_shared_redis(settings, node))
        counters: NodeCounters | None = None
        if node is not None:
            counters = cleanup.enter_context(node_counter(settings, "insult", node))
        store = open_store(settings, shared)
        service = InsultService(store, settings)
        server = RpcServer(
            settings,
            names.insult_requests,
            service.dispatch,
            error_reply,
            role="insult-service" if node is None else f"insult-node/{node}",
            prefetch=RPC_PREFETCH if node is None else NODE_PREFETCH,
            on_served=None if counters is None else counters.increment,
        )
        cleanup.callback(server.close)
        declare_broadcast_exchange(server.channel, names)

        def send(insult: str) -> None:
            # The broadcaster thread must not touch the serving channel: it hands each
            # publish to the serving thread.
            server.publish_threadsafe(names.broadcast, insult.encode())

        broadcaster = make_broadcaster(settings, node, shared, store, send)
        broadcaster.start()
        log.info("serving %s with %d insults", names.insult_requests, len(store.all()))
        try:
            server.serve(process.stop)
        finally:
            # Stopped (and, for a node, the lease handed over) before the connection
            # its publishes go through is closed.
            broadcaster.stop()
            broadcaster.join()
    log.info("stopped after %d requests", server.served)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.rabbitmq.insult_service [--node-id ID]``."""
    service_main(
        "middlewares.rabbitmq.insult_service",
        "The InsultService on RabbitMQ: answers <ns>.insults.requests and broadcasts on "
        "<ns>.insults.broadcast until SIGINT/SIGTERM; with --node-id, one node of the "
        "n-node form (shared store, lease and counters in Redis).",
        serve,
        argv=argv,
    )


if __name__ == "__main__":
    main()
