"""The InsultService's client and broadcasts on the direct middlewares, both ends.

:class:`DirectInsultClient` is the client of both transports, in either form: it asks
the master for the live nodes and spreads its calls over them round-robin, or calls the
one-node service. A subscriber is a server of the transport in the client process,
receiving ``notify(insult)`` into an :class:`Inbox`; the service calls every subscriber
on a connection of its own (:class:`Notifier`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Hashable

from middlewares.addresses import is_loopback, is_wildcard
from middlewares.broadcast import SubscriberSet
from middlewares.contract import BroadcastCallback, InsultClient, MiddlewareError
from middlewares.direct.directory import MASTER_TIMEOUT
from middlewares.direct.pool import NodePool
from middlewares.direct.transport import DirectTransport, Link, MethodNotFound, SubscriberServer
from middlewares.settings import Settings

log = logging.getLogger(__name__)

#: Longest a subscriber may take to acknowledge one broadcast before it counts as failed
#: (half the broadcast interval when that is shorter).
NOTIFY_TIMEOUT = 2.0


def notify_timeout(settings: Settings) -> float:
    """How long one ``notify`` call may take: a hung subscriber must have failed before
    the next broadcast, to be dropped within three."""
    return min(settings.timeout, NOTIFY_TIMEOUT, settings.broadcast_interval / 2)


def round_timeout(settings: Settings) -> float:
    """How long a broadcaster waits for a round of notifications: never past the next
    round (or, in the n-node form, the renewal of its lease); a slow subscriber still has
    :func:`notify_timeout`, on its pool thread."""
    return min(NOTIFY_TIMEOUT, settings.broadcast_interval / 4)


class Inbox:
    """Where a subscriber's server puts the insults it receives, and the thread that
    hands them to the user's callback.

    :meth:`notify` only queues, so the service never waits on the callback and a slow
    callback is not mistaken for a dead subscriber.
    """

    def __init__(self, callback: BroadcastCallback) -> None:
        self._callback = callback
        self._insults: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="subscriber-callback", daemon=True
        )
        self._dispatcher.start()

    def notify(self, insult: object) -> bool:
        """Receive one broadcast insult."""
        if not isinstance(insult, str):
            raise ValueError(f"insult must be a string, got {type(insult).__name__}")
        self._insults.put(insult)
        return True

    def close(self) -> None:
        """Hand what was received to the callback, then stop the thread."""
        self._insults.put(None)
        if threading.current_thread() is not self._dispatcher:
            self._dispatcher.join()

    def _dispatch(self) -> None:
        while (insult := self._insults.get()) is not None:
            try:
                self._callback(insult)
            except Exception:
                log.exception("subscriber callback failed on %r", insult)


def insult_nodes(transport: DirectTransport, settings: Settings) -> tuple[Link, Link | None]:
    """The InsultService's nodes as a client sees them (a :class:`NodePool`, itself a
    :class:`Link`), and the master's link if any.

    The master of the n-node form lists its nodes (``nodes()``); calls then go
    round-robin over them, with failover. Where no master answers (nothing registered,
    or a one-node service that has no ``nodes`` method), the one-node service's own link
    is called: with one fixed node and no failover a pool would only add its cost to
    every call. Raises the transport's ``absent`` error when neither is there.
    """
    master = transport.reach(settings, "master", timeout=min(settings.timeout, MASTER_TIMEOUT))
    try:
        master.call("nodes")
    except (transport.absent, MethodNotFound):
        master.close()
        service = transport.reach(settings, "insult")
        service.connect()
        return service, None
    except BaseException:
        master.close()
        raise

    def node(address: str) -> Link:
        return transport.link(settings, address, "the node has gone", settings.timeout)

    where = f"the {transport.name} InsultService master of namespace {settings.namespace}"
    pool = NodePool(lambda: master.call("nodes"), node, settings.timeout, where)
    try:
        pool.connect()
    except BaseException:
        pool.close()
        master.close()
        raise
    return pool, master


class DirectInsultClient(InsultClient):
    """The InsultService client of XML-RPC and Pyro4, in either form.

    In the n-node form a call that cannot reach its node is retried on another one for
    up to ``settings.timeout``; see :class:`~middlewares.direct.pool.NodePool` for why
    that is safe, and for ``add_insult``'s one corner (False for an insult that was new
    when its first attempt was applied just before its node died).
    """

    def __init__(self, transport: DirectTransport, settings: Settings) -> None:
        self._transport = transport
        self._settings = settings
        self._nodes, self._master = insult_nodes(transport, settings)
        self._subscribed: tuple[SubscriberServer, Inbox] | None = None

    def add_insult(self, insult: str) -> bool:
        return self._nodes.call("add_insult", insult)

    def get_insults(self) -> list[str]:
        return self._nodes.call("get_insults")

    def random_insult(self) -> str:
        return self._nodes.call("random_insult")

    def subscribe(self, callback: BroadcastCallback) -> None:
        """Start a local server exposing ``notify`` and register its address with the
        service. Subscribing again replaces the callback.

        The server listens on ``settings.host`` and is advertised at
        ``settings.advertise_host``, by default the listen address, or on a wildcard the
        local address of this client's connection to the service (an address the
        service can reach). Raises ValueError when it would listen on loopback while
        the service is on another machine: it could never call back.
        """
        self.unsubscribe()
        host, advertise = self._callback_address()
        inbox = Inbox(callback)
        server = self._transport.subscriber_server(inbox.notify, host, advertise)
        try:
            self._nodes.call("subscribe", server.address)
        except BaseException:
            server.stop()
            inbox.close()
            raise
        self._subscribed = server, inbox

    def _callback_address(self) -> tuple[str, str]:
        """Where the subscriber's server listens, and the address it gives the service."""
        listen = self._settings.host
        if self._settings.advertise_host:
            return listen, self._settings.advertise_host
        towards_service = self._nodes.local_address()
        if is_wildcard(listen):
            return listen, towards_service
        if is_loopback(listen) and not is_loopback(towards_service):
            raise ValueError(
                f"a subscriber listening on {listen} cannot be called back by a service on "
                f"another machine; give the client --host {towards_service} (or 0.0.0.0)"
            )
        return listen, listen

    def unsubscribe(self) -> None:
        """Tell the service, then stop the local server.

        When the service cannot be told, the server stops anyway and the service drops
        the subscriber after three failed broadcasts.
        """
        subscribed, self._subscribed = self._subscribed, None
        if subscribed is None:
            return
        server, inbox = subscribed
        try:
            self._nodes.call("unsubscribe", server.address)
        except MiddlewareError as error:
            log.info("could not unsubscribe %s: %s", server.address, error)
        finally:
            server.stop()
            inbox.close()

    def close(self) -> None:
        self.unsubscribe()
        self._nodes.close()
        if self._master is not None:
            self._master.close()


class Notifier:
    """The ``notify`` of a :class:`~middlewares.broadcast.SubscriberSet`: one kept
    connection per subscriber, made by ``connect(address, timeout)``.

    The set never notifies one subscriber from two threads at once, so a connection is
    never shared.
    """

    def __init__(self, settings: Settings, connect: Callable[[str, float], Link]) -> None:
        self._connect = connect
        self._timeout = notify_timeout(settings)
        self._links: dict[str, Link] = {}
        self._lock = threading.Lock()

    def notify(self, address: Hashable, insult: str) -> None:
        """Deliver one broadcast; raises when the subscriber does not acknowledge it."""
        key = str(address)
        with self._lock:
            link = self._links.get(key)
            if link is None:
                link = self._links[key] = self._connect(key, self._timeout)
        link.call("notify", insult)

    def broadcast_to(self, subscribers: SubscriberSet) -> Callable[[str], None]:
        """The ``send`` of a broadcaster: one round of notifications to ``subscribers``."""

        def send(insult: str) -> None:
            self._forget_all_but(subscribers.addresses())
            subscribers.broadcast(insult)

        return send

    def _forget_all_but(self, addresses: list[Hashable]) -> None:
        """Drop the connections of subscribers no longer subscribed.

        Not closed here: one may still be in a hung call, which ends at its timeout; the
        socket closes when its last reference goes.
        """
        live = {str(address) for address in addresses}
        with self._lock:
            for key in [key for key in self._links if key not in live]:
                del self._links[key]


def notifier(transport: DirectTransport, settings: Settings) -> Notifier:
    """A :class:`Notifier` calling subscribers over ``transport``."""
    return Notifier(
        settings,
        lambda address, timeout: transport.link(
            settings, address, "the subscriber is gone", timeout
        ),
    )
