"""The InsultService process: ``python -m middlewares.pyro.insult_service [--node-id ID]``.

One :class:`InsultService` object serves every client on the daemon's thread pool.
Subscribers are Pyro4 objects exposing ``notify(insult)``; a broadcaster calls them every
``broadcast_interval`` through a :class:`~middlewares.service.SubscriberSet`, which
notifies them in parallel and drops one after three failed broadcasts in a row.

Without ``--node-id`` this is the one-node form: the object is registered as
``<ns>.insult.service``, the store and the subscribers live in this process.

With ``--node-id`` it is one node of the n-node form: the object is served unnamed on a
free port and the node registers its URI with the master (``<ns>.insult.master``, see
:mod:`middlewares.pyro.master`) and heartbeats every second. The store is the Redis set
``<ns>:insults:store``, the subscribers the Redis hash ``<ns>:insults:subscribers``, and
only the node holding the lease ``<ns>:insults:broadcaster`` broadcasts. Requests served
are counted in ``<ns>:stats:insult``.

On SIGTERM either form stops taking requests (a node first deregisters and hands the
broadcast lease over), finishes those in flight, and exits 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import Pyro4

from middlewares.core import InsultStore, canonical_insult, load_default_insults
from middlewares.direct import (
    MASTER_TIMEOUT,
    NOTIFY_TIMEOUT,
    NodeMembership,
    Notifier,
    RequestGate,
    insult_node,
)
from middlewares.pyro._common import (
    INSULT_MASTER,
    INSULT_SERVICE,
    NAME_SERVER_WAIT,
    Remote,
    build_parser,
    direct_uri,
    domain_errors,
    node_request,
    object_name,
    publish,
    run_service,
    running_daemon,
)
from middlewares.runtime import StopSignal, parse_node_id
from middlewares.service import Broadcaster, InsultOps, SubscriberSet
from middlewares.settings import Settings, from_args, simulate_work


@Pyro4.expose
class InsultService:
    """The remote object: the insult store and the subscriber list, shared by all clients.

    The store is any :class:`~middlewares.service.InsultOps` and the subscribers any
    registry: in this process for the one-node form, in Redis for the n-node form. Every
    call goes through the node's :class:`~middlewares.direct.RequestGate` and spends
    ``work_ms`` of simulated service time.
    """

    def __init__(
        self, store: InsultOps, subscribers: SubscriberSet, gate: RequestGate, settings: Settings
    ) -> None:
        self._store = store
        self._subscribers = subscribers
        self._gate = gate
        self._settings = settings
        self._limits = settings.limits

    def add_insult(self, insult: object) -> bool:
        """Store an insult; True only when it was new. ValueError names a bad insult."""
        with self._request(), domain_errors():
            return self._store.add(canonical_insult(insult, self._limits))

    def get_insults(self) -> list[str]:
        """Every stored insult, in canonical form."""
        with self._request():
            return self._store.all()

    def random_insult(self) -> str:
        """A random stored insult, or "" when there is none."""
        with self._request():
            return self._store.random()

    def subscribe(self, uri: object) -> bool:
        """Send broadcasts to the Pyro4 object at ``uri``; False if it already was."""
        with self._request():
            return self._subscribers.add(direct_uri(uri, "subscriber uri"))

    def unsubscribe(self, uri: object) -> bool:
        """Stop sending broadcasts to ``uri``; False if it was not subscribed."""
        with self._request():
            return self._subscribers.remove(direct_uri(uri, "subscriber uri"))

    @contextlib.contextmanager
    def _request(self) -> Iterator[None]:
        with node_request(self._gate):
            simulate_work(self._settings)
            yield


def _notifier(settings: Settings) -> Notifier:
    return Notifier(
        settings,
        lambda uri, timeout: Remote(settings, uri, "the subscriber is gone", timeout),
    )


def serve(settings: Settings) -> None:
    """The one-node form: publish the InsultService and broadcast until SIGINT or SIGTERM."""
    stop = StopSignal()
    store = InsultStore(limits=settings.limits)
    if settings.load_defaults:
        for insult in load_default_insults():
            store.add(insult)
    notifier = _notifier(settings)
    subscribers = SubscriberSet(notifier.notify, round_timeout=NOTIFY_TIMEOUT)
    gate = RequestGate()
    service = InsultService(store, subscribers, gate, settings)
    broadcaster = Broadcaster(
        settings.broadcast_interval, store.random, notifier.broadcast_to(subscribers)
    )
    try:
        with publish(settings, {INSULT_SERVICE: service}):
            broadcaster.start()
            stop.wait()
            broadcaster.stop()
            gate.close(settings.timeout)  # finish the calls in flight before the daemon goes
    finally:
        subscribers.close()


def serve_node(settings: Settings, node: str) -> None:
    """One node of the n-node form, until SIGINT or SIGTERM (see the module docstring)."""
    stop = StopSignal()
    with insult_node(settings, node, _notifier(settings)) as state:
        master = Remote(
            settings,
            object_name(settings, INSULT_MASTER),
            "start the deployment with `python -m middlewares serve pyro insult --nodes N`",
            timeout=min(settings.timeout, MASTER_TIMEOUT),
        )
        try:
            with running_daemon(settings) as daemon:
                service = InsultService(state.store, state.subscribers, state.gate, settings)
                object_id = f"{settings.namespace}.insult.node.{node}"
                uri = str(daemon.register(service, objectId=object_id))
                membership = NodeMembership(master, node, uri)
                state.serve(membership, NAME_SERVER_WAIT, stop, settings.timeout)
        finally:
            master.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.pyro.insult_service``."""
    parser = build_parser(
        "middlewares.pyro.insult_service",
        "Serve the InsultService as <namespace>.insult.service in a Pyro4 name server, or "
        "with --node-id as one node of the n-node form. Usually started by "
        "`python -m middlewares serve pyro insult [--nodes N]`.",
    )
    parser.add_argument(
        "--node-id",
        type=parse_node_id,
        help="run as this node of the n-node form (registers with <namespace>.insult.master; "
        "shared state in Redis); default: the one-node form",
    )
    args = parser.parse_args(argv)
    settings = from_args(args)
    if args.node_id is None:
        run_service("pyro-insult-service", lambda: serve(settings))
    else:
        run_service(f"pyro-insult-node {args.node_id}", lambda: serve_node(settings, args.node_id))


if __name__ == "__main__":
    main()
