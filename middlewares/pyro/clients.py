"""Pyro4 clients of the InsultService, the InsultFilter and the echo.

Each client resolves its object in the name server once and keeps the proxy: one
persistent connection, one round trip per call (see :class:`~middlewares.pyro._common.Remote`
for timeouts and errors). A subscriber is a small Pyro4 daemon inside the client process.

The InsultService client serves both forms with one class: it looks the master
``<ns>.insult.master`` up first; when one is registered (the n-node form) it keeps a
connection per node listed by the master and spreads its calls over them round-robin,
retrying on another node a call whose node cannot be reached
(:class:`~middlewares.direct.NodePool`). Otherwise it uses ``<ns>.insult.service``, the
one-node form, as one fixed node. The filter client needs no such thing: in both forms
the front is the one object clients talk to.
"""

from __future__ import annotations

import logging
import queue
import threading

import Pyro4

from middlewares.contract import (
    BroadcastCallback,
    EchoClient,
    InsultClient,
    MiddlewareError,
)
from middlewares.direct import MASTER_TIMEOUT, NodePool
from middlewares.pyro._common import (
    ECHO,
    INSULT_FILTER,
    INSULT_MASTER,
    INSULT_SERVICE,
    NotRegistered,
    Remote,
    object_name,
    serve_hint,
)
from middlewares.settings import Settings
from middlewares.workqueue import FrontClient

log = logging.getLogger(__name__)

#: Characters of text per submit_many round trip; keeps messages far below Pyro4's limit.
_SUBMIT_CHUNK_CHARS = 4 * 1024 * 1024


class PyroInsultClient(InsultClient):
    """Client of the nodes listed by ``<ns>.insult.master``, or of ``<ns>.insult.service``.

    In the n-node form a call that cannot reach its node is retried on another one for
    up to ``settings.timeout``; see :class:`~middlewares.direct.NodePool` for why that is
    safe, and for ``add_insult``'s one corner (False for an insult that was new when its
    first attempt was applied just before its node died).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._subscription: _Subscription | None = None
        self._master: Remote | None = Remote(
            settings,
            object_name(settings, INSULT_MASTER),
            serve_hint("insult --nodes N"),
            timeout=min(settings.timeout, MASTER_TIMEOUT),
        )
        try:
            self._master.connect()
        except NotRegistered:
            self._master.close()
            self._master = None
        self._nodes = self._node_pool()
        try:
            self._nodes.connect()
        except BaseException:
            self.close()
            raise

    def _node_pool(self) -> NodePool:
        settings = self._settings

        def connect(address: str) -> Remote:
            return Remote(settings, address, serve_hint("insult"))

        master = self._master
        if master is None:
            service = object_name(settings, INSULT_SERVICE)
            return NodePool(
                lambda: [service], connect, settings.timeout, service, failover=False
            )
        return NodePool(lambda: master.call("nodes"), connect, settings.timeout, master.uri)

    def add_insult(self, insult: str) -> bool:
        return self._nodes.call("add_insult", insult)

    def get_insults(self) -> list[str]:
        return self._nodes.call("get_insults")

    def random_insult(self) -> str:
        return self._nodes.call("random_insult")

    def subscribe(self, callback: BroadcastCallback) -> None:
        """Start a local daemon exposing ``notify`` and register its URI with the service.

        Subscribing again replaces the callback.
        """
        self.unsubscribe()
        # The address this client reaches the service from is one the service can reach.
        subscription = _Subscription(callback, self._nodes.local_address())
        try:
            self._nodes.call("subscribe", subscription.uri)
        except BaseException:
            subscription.stop()
            raise
        self._subscription = subscription

    def unsubscribe(self) -> None:
        """Tell the service, then stop the local daemon.

        When the service cannot be told, the daemon stops anyway and the service drops
        the subscriber after three failed broadcasts.
        """
        subscription, self._subscription = self._subscription, None
        if subscription is None:
            return
        try:
            self._nodes.call("unsubscribe", subscription.uri)
        except MiddlewareError as error:
            log.info("could not unsubscribe %s: %s", subscription.uri, error)
        finally:
            subscription.stop()

    def close(self) -> None:
        self.unsubscribe()
        self._nodes.close()
        if self._master is not None:
            self._master.close()


@Pyro4.expose
class BroadcastListener:
    """The subscriber object: ``notify`` only queues, so the service never waits on the
    user's callback and a slow callback is not mistaken for a dead subscriber."""

    def __init__(self, inbox: queue.SimpleQueue[str | None]) -> None:
        self._inbox = inbox

    def notify(self, insult: object) -> None:
        """Receive one broadcast insult."""
        if not isinstance(insult, str):
            raise ValueError(f"insult must be a string, got {type(insult).__name__}")
        self._inbox.put(insult)


class _Subscription:
    """A daemon thread serving a :class:`BroadcastListener`, and a thread running the callback."""

    def __init__(self, callback: BroadcastCallback, host: str) -> None:
        self._callback = callback
        self._inbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._daemon = Pyro4.Daemon(host=host, port=0)
        self.uri = str(self._daemon.register(BroadcastListener(self._inbox)))
        threading.Thread(
            target=self._daemon.requestLoop, name="subscriber-daemon", daemon=True
        ).start()
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="subscriber-callback", daemon=True
        )
        self._dispatcher.start()

    def _dispatch(self) -> None:
        while (insult := self._inbox.get()) is not None:
            try:
                self._callback(insult)
            except Exception:
                log.exception("subscriber callback failed on %r", insult)

    def stop(self) -> None:
        """Stop receiving; insults already received are still handed to the callback."""
        self._daemon.shutdown()
        self._inbox.put(None)
        if threading.current_thread() is not self._dispatcher:
            self._dispatcher.join()


class PyroFilterClient(FrontClient):
    """Client of ``<ns>.insult.filter``."""

    def __init__(self, settings: Settings) -> None:
        remote = Remote(settings, object_name(settings, INSULT_FILTER), serve_hint("filter"))
        remote.connect()
        super().__init__(remote, settings, _SUBMIT_CHUNK_CHARS)


class PyroEchoClient(EchoClient):
    """Client of ``<ns>.echo``."""

    def __init__(self, settings: Settings) -> None:
        self._remote = Remote(settings, object_name(settings, ECHO), serve_hint("echo"))
        self._remote.connect()

    def echo(self, payload: str) -> str:
        return self._remote.call("echo", payload)

    def close(self) -> None:
        self._remote.close()
