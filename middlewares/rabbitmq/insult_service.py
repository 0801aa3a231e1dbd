"""The RabbitMQ InsultService process: ``python -m middlewares.rabbitmq.insult_service``.

It answers JSON requests from ``<ns>.insults.requests`` and, every broadcast interval,
publishes a random insult to the fanout exchange ``<ns>.insults.broadcast``.

With ``--node-id`` it is one node of the n-node form: any number of such processes
consume the request queue side by side (the broker spreads the requests), serve one
insult set in Redis, broadcast only while holding the deployment's broadcast lease, and
count the requests each one answers.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

import redis

from middlewares.cluster import LeasedBroadcaster, RedisInsultStore, RestartSafeLease
from middlewares.core import InsultError, InsultStore, Limits, load_default_insults
from middlewares.rabbitmq._amqp import (
    RPC_PREFETCH,
    Names,
    RpcServer,
    declare_broadcast_exchange,
    quiet_pika,
    settings_parser,
)
from middlewares.rabbitmq._node import Node, add_node_argument, node_membership
from middlewares.runtime import StopSignal, configure_logging, run_main
from middlewares.service import (
    Broadcaster,
    InsultOps,
    decode_request,
    dispatch_insult_request,
    error_reply,
    ok_reply,
)
from middlewares.settings import Settings, from_args, simulate_work

#: Requests a node of the n-node form holds unacknowledged. Enough to keep a node busy
#: while its acknowledgement travels to the broker, few enough that a backlog is shared
#: out request by request rather than in large blocks (and that a killed node leaves
#: little to redeliver).
NODE_PREFETCH = 4


def open_store(settings: Settings, shared: redis.Redis | None = None) -> InsultOps:
    """The store this process serves from: in-process for the one-node form, the Redis set
    of the namespace (``shared``) for a node of the n-node form.

    Everything else in this module only needs :class:`InsultOps`.
    """
    defaults = load_default_insults() if settings.load_defaults else ()
    if shared is None:
        return InsultStore(defaults, settings.limits)
    store = RedisInsultStore(shared, settings.namespace, settings.limits)
    # Every node adds the defaults when it starts: SADD makes that idempotent.
    store.add_all(defaults)
    return store


def answer(store: InsultOps, limits: Limits, body: bytes) -> bytes:
    """The reply body for one request body; bad requests get an error reply, never raise.

    So does a request a node cannot serve because the shared store in Redis is out of
    reach: the client hears why at once, and the node keeps serving when Redis is back.
    """
    try:
        request = decode_request(body)
        return ok_reply(
            dispatch_insult_request(store, request.get("op"), request.get("args", []), limits)
        )
    except InsultError as error:
        return error_reply(str(error))
    except redis.RedisError as error:
        return error_reply(
            f"the shared insult store (Redis) is unreachable: {error}; retry once Redis "
            "is back (`python -m middlewares brokers up`)"
        )


def make_broadcaster(
    settings: Settings, node: Node | None, store: InsultOps, send: Callable[[str], None]
) -> Broadcaster | LeasedBroadcaster:
    """The one-node form broadcasts by itself; a node only while it holds the lease.

    A restarted node (same id) may find the lease of its earlier life still naming it;
    RestartSafeLease waits for that one to expire, so the broadcast keeps its interval.
    """
    interval = settings.broadcast_interval
    if node is None:
        return Broadcaster(interval, store.random, send)
    lease = RestartSafeLease(
        node.redis, settings.namespace, node.id, LeasedBroadcaster.lease_ttl(interval)
    )
    return LeasedBroadcaster(lease, interval, store.random, send)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM."""
    parser = settings_parser("python -m middlewares.rabbitmq.insult_service", __doc__ or "")
    add_node_argument(parser)
    args = parser.parse_args(argv)
    settings = from_args(args)
    node_id: str | None = args.node_id
    log = configure_logging("rabbitmq-insult" if node_id is None else f"rabbitmq-insult[{node_id}]")
    quiet_pika()
    stop = StopSignal()
    names = Names(settings.namespace)
    limits = settings.limits
    with ExitStack() as cleanup:
        node = None if node_id is None else cleanup.enter_context(
            node_membership(settings, "insult", node_id)
        )
        store = open_store(settings, None if node is None else node.redis)

        def handle(body: bytes) -> bytes:
            simulate_work(settings)  # --work-ms: the speedup study's service time
            return answer(store, limits, body)

        server = RpcServer(
            settings,
            names.insult_requests,
            handle,
            error_reply,
            role="insult-service" if node is None else f"insult-node/{node.id}",
            prefetch=RPC_PREFETCH if node is None else NODE_PREFETCH,
            on_served=None if node is None else node.counters.increment,
        )
        cleanup.callback(server.close)
        declare_broadcast_exchange(server.channel, names)

        def send(insult: str) -> None:
            # The broadcaster thread must not touch the serving channel: it hands each
            # publish to the serving thread.
            server.publish_threadsafe(names.broadcast, insult.encode())

        broadcaster = make_broadcaster(settings, node, store, send)
        broadcaster.start()
        log.info("serving %s with %d insults", names.insult_requests, len(store.all()))
        try:
            server.serve(stop)
        finally:
            # Stopped (and, for a node, the lease handed over) before the connection
            # its publishes go through is closed.
            broadcaster.stop()
            broadcaster.join()
    log.info("stopped after %d requests", server.served)
    return 0


if __name__ == "__main__":
    run_main(main)
