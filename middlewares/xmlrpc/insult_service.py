"""The InsultService process: ``python -m middlewares.xmlrpc.insult_service``.

One :class:`InsultService` serves every client, a thread per connection. Subscribers are
XML-RPC servers exposing ``notify(insult)``, called through a
:class:`~middlewares.service.SubscriberSet`, which notifies them in parallel and drops
one after three failed broadcasts in a row.

Two forms, one class:

- the one-node form (no ``--node-id``): the service listens at
  ``http://<host>:<insult-port>/<ns>/insult``, keeps the insults and the subscribers in
  its memory, and a :class:`~middlewares.service.Broadcaster` broadcasts every
  ``broadcast_interval``;
- a node of the n-node form (``--node-id ID``): it listens on a port of its own, registers
  its URL with the master at the well-known URL (:mod:`middlewares.xmlrpc.master`) and
  heartbeats; the insults, the subscribers, the broadcaster lease and its served counter
  are in Redis (:mod:`middlewares.cluster`, :mod:`middlewares.direct`), so any node
  answers like any other and only the lease holder broadcasts. On SIGTERM it
  deregisters, answers the calls it accepted, refuses later ones with fault
  ``NODE_LEAVING`` (its clients retry them on another node) and exits 0.
"""

from __future__ import annotations

import functools
import logging
import xmlrpc.client
from collections.abc import Callable
from typing import Any

import redis

from middlewares.core import InsultStore, Limits, canonical_insult, load_default_insults
from middlewares.direct import (
    MASTER_TIMEOUT,
    NOTIFY_TIMEOUT,
    NodeMembership,
    Notifier,
    RequestGate,
    insult_node,
)
from middlewares.runtime import StopSignal, parse_node_id
from middlewares.service import Broadcaster, InsultOps, SubscriberSet
from middlewares.settings import Settings, from_args, simulate_work
from middlewares.workqueue import RECONNECT_WAIT
from middlewares.xmlrpc._common import (
    APPLICATION_ERROR,
    Remote,
    RpcServer,
    build_parser,
    check_http_url,
    run_service,
    service_path,
    service_url,
    serving,
)

log = logging.getLogger(__name__)

#: How to start what a node registers with.
MASTER_HINT = (
    "no n-node InsultService master answers there; start one with "
    "`python -m middlewares serve xmlrpc insult --nodes N`"
)


class InsultService:
    """The InsultService's methods, over any store and any subscriber registry.

    The store is any :class:`~middlewares.service.InsultOps`: an in-memory set in the
    one-node form, the Redis set shared by every node in the n-node form.
    """

    def __init__(self, store: InsultOps, subscribers: SubscriberSet, settings: Settings) -> None:
        self._store = store
        self._subscribers = subscribers
        self._settings = settings
        self._limits: Limits = settings.limits

    def methods(self) -> dict[str, Callable[..., Any]]:
        """The XML-RPC methods, by name."""
        methods = {
            "add_insult": self.add_insult,
            "get_insults": self.get_insults,
            "random_insult": self.random_insult,
            "subscribe": self.subscribe,
            "unsubscribe": self.unsubscribe,
        }
        return {name: _shared_state_failures_as_faults(call) for name, call in methods.items()}

    def add_insult(self, insult: object) -> bool:
        """Store an insult; True only when it was new. ValueError names a bad insult."""
        simulate_work(self._settings)
        return self._store.add(canonical_insult(insult, self._limits))

    def get_insults(self) -> list[str]:
        """Every stored insult, in canonical form."""
        simulate_work(self._settings)
        return self._store.all()

    def random_insult(self) -> str:
        """A random stored insult, or "" when there is none."""
        simulate_work(self._settings)
        return self._store.random()

    def subscribe(self, url: object) -> bool:
        """Send broadcasts to the XML-RPC server at ``url``; False if it already was."""
        return self._subscribers.add(check_http_url(url, "subscriber url"))

    def unsubscribe(self, url: object) -> bool:
        """Stop sending broadcasts to ``url``; False if it was not subscribed."""
        return self._subscribers.remove(check_http_url(url, "subscriber url"))


def _shared_state_failures_as_faults(call: Callable[..., Any]) -> Callable[..., Any]:
    """A failing Redis is the deployment's trouble, not a bug of the call: say so."""

    @functools.wraps(call)
    def answered(*args: Any) -> Any:
        try:
            return call(*args)
        except redis.RedisError as error:
            log.warning("the shared state (Redis) failed: %s", error)
            raise xmlrpc.client.Fault(
                APPLICATION_ERROR, f"the shared insult store (Redis) failed: {error}; retry"
            ) from None

    return answered


def _notifier(settings: Settings) -> Notifier:
    return Notifier(
        settings, lambda url, timeout: Remote(url, "the subscriber is gone", timeout)
    )


def serve(settings: Settings) -> None:
    """The one-node form: serve the InsultService and broadcast until SIGINT or SIGTERM."""
    stop = StopSignal()
    defaults = load_default_insults() if settings.load_defaults else []
    store = InsultStore(defaults, settings.limits)
    notifier = _notifier(settings)
    subscribers = SubscriberSet(notifier.notify, round_timeout=NOTIFY_TIMEOUT)
    broadcaster = Broadcaster(
        settings.broadcast_interval, store.random, notifier.broadcast_to(subscribers)
    )
    service = InsultService(store, subscribers, settings)
    gate = RequestGate()
    with serving(settings, "insult", service.methods(), gate) as server:
        broadcaster.start()
        stop.wait()
        broadcaster.stop()
        # Answer the calls under way before the connections close.
        gate.close(settings.timeout)
        server.leave(settings.timeout)
    subscribers.close()


def serve_node(settings: Settings, node: str) -> None:
    """One node of the n-node form, until SIGINT or SIGTERM (see the module)."""
    stop = StopSignal()
    with insult_node(settings, node, _notifier(settings)) as state:
        methods = InsultService(state.store, state.subscribers, settings).methods()
        master = Remote(
            service_url(settings, "insult"), MASTER_HINT, min(settings.timeout, MASTER_TIMEOUT)
        )
        server = RpcServer(
            settings.host, 0, service_path(settings, "insult"), methods, gate=state.gate
        )
        server.start()
        try:
            state.serve(
                NodeMembership(master, node, server.url), RECONNECT_WAIT, stop, settings.timeout
            )
            server.leave(settings.timeout)
        finally:
            server.stop()
            master.close()
    log.info("node %s left", node)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.xmlrpc.insult_service``."""
    parser = build_parser(
        "middlewares.xmlrpc.insult_service",
        "Serve the InsultService at http://HOST:INSULT_PORT/NAMESPACE/insult, or with "
        "--node-id as one node of the n-node form. Usually started by "
        "`python -m middlewares serve xmlrpc insult [--nodes N]`.",
    )
    parser.add_argument(
        "--node-id",
        type=parse_node_id,
        metavar="ID",
        help="run as node ID of the n-node form: listen on a port of its own, register "
        "with the master on the insult port, keep the shared state in Redis; the id is "
        "kept across restarts (default: the one-node form)",
    )
    args = parser.parse_args(argv)
    settings = from_args(args)
    if args.node_id is None:
        run_service("xmlrpc-insult-service", lambda: serve(settings))
    else:
        run_service(
            f"xmlrpc-insult-node[{args.node_id}]", lambda: serve_node(settings, args.node_id)
        )


if __name__ == "__main__":
    main()
