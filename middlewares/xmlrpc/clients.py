"""XML-RPC clients of the InsultService, the InsultFilter and the echo.

Each client keeps one HTTP/1.1 connection per server it calls, so a call costs one round
trip (see :class:`~middlewares.xmlrpc._common.Remote` for timeouts and errors). A client
belongs to one thread at a time. A subscriber is a small XML-RPC server inside the
client process.

The InsultService client works with both forms: it asks the well-known URL for
``nodes()``; the one-node service has no such method and is called directly, the master
of the n-node form lists its nodes, and the client spreads its calls over them
round-robin (:class:`~middlewares.direct.NodePool`), retrying a call whose node is gone
on another one.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from middlewares.contract import (
    BroadcastCallback,
    EchoClient,
    InsultClient,
    MiddlewareError,
)
from middlewares.direct import MASTER_TIMEOUT, NodePool
from middlewares.settings import Settings
from middlewares.workqueue import FrontClient
from middlewares.xmlrpc._common import (
    MethodNotFound,
    Remote,
    RpcServer,
    serve_hint,
    service_url,
)

log = logging.getLogger(__name__)

#: Characters of text per submit_many round trip: even if XML escaping made every
#: character five bytes, a request stays under the servers' 64 MiB limit.
_SUBMIT_CHUNK_CHARS = 8 * 1024 * 1024
#: Path of a subscriber's own server.
SUBSCRIBER_PATH = "/subscriber"


def _connect(settings: Settings, service: str) -> Remote:
    remote = Remote(service_url(settings, service), serve_hint(service), settings.timeout)
    remote.connect()
    return remote


class InsultNodes:
    """Connections to the InsultService at ``/<ns>/insult``, in either form.

    The well-known URL is asked for ``nodes()``: the one-node service has no such method
    and is called directly (errors are raised as they come); the master of the n-node
    form lists its nodes, and calls go round-robin over them through a
    :class:`~middlewares.direct.NodePool`, which retries a call whose node is gone on
    another node and asks the master again every two seconds.

    Raises :class:`~middlewares.xmlrpc._common.NotServing` when nothing serves at the
    URL, and :class:`~middlewares.contract.BrokerUnavailable` when a master lists no
    live node within ``settings.timeout``.
    """

    def __init__(self, settings: Settings) -> None:
        entry = _connect(settings, "insult")
        self._master: Remote | None = None
        try:
            entry.call("nodes")
        except MethodNotFound:
            # The one-node service: one fixed address, the connection already open.
            self._pool = NodePool(
                lambda: [entry.url],
                lambda url: entry,
                settings.timeout,
                entry.url,
                failover=False,
            )
            return
        except BaseException:
            entry.close()
            raise
        entry.close()
        master = self._master = Remote(
            entry.url, serve_hint("insult"), min(settings.timeout, MASTER_TIMEOUT)
        )

        def node(url: str) -> Remote:
            return Remote(url, "the node has gone", settings.timeout)

        self._pool = NodePool(lambda: master.call("nodes"), node, settings.timeout, entry.url)
        try:
            self._pool.connect()
        except BaseException:
            self.close()
            raise

    def call(self, method: str, *args: Any) -> Any:
        """Call ``method(*args)`` on the service, or on the next node."""
        return self._pool.call(method, *args)

    def local_address(self) -> str:
        """The local address of a connection to the service: where it can reach us."""
        return self._pool.local_address()

    def close(self) -> None:
        """Close every connection. Safe to call twice."""
        self._pool.close()
        if self._master is not None:
            self._master.close()


class XmlRpcInsultClient(InsultClient):
    """Client of ``/<ns>/insult``: the one-node service, or the nodes of the n-node form."""

    def __init__(self, settings: Settings) -> None:
        self._remote = InsultNodes(settings)
        self._subscription: _Subscription | None = None

    def add_insult(self, insult: str) -> bool:
        return self._remote.call("add_insult", insult)

    def get_insults(self) -> list[str]:
        return self._remote.call("get_insults")

    def random_insult(self) -> str:
        return self._remote.call("random_insult")

    def subscribe(self, callback: BroadcastCallback) -> None:
        """Start a local server exposing ``notify`` and register its URL with the service.

        Subscribing again replaces the callback.
        """
        self.unsubscribe()
        # The address this client reaches the service from is one the service can reach.
        subscription = _Subscription(callback, self._remote.local_address())
        try:
            self._remote.call("subscribe", subscription.url)
        except BaseException:
            subscription.stop()
            raise
        self._subscription = subscription

    def unsubscribe(self) -> None:
        """Tell the service, then stop the local server.

        When the service cannot be told, the server stops anyway and the service drops
        the subscriber after three failed broadcasts.
        """
        subscription, self._subscription = self._subscription, None
        if subscription is None:
            return
        try:
            self._remote.call("unsubscribe", subscription.url)
        except MiddlewareError as error:
            log.info("could not unsubscribe %s: %s", subscription.url, error)
        finally:
            subscription.stop()

    def close(self) -> None:
        self.unsubscribe()
        self._remote.close()


class _Subscription:
    """A server thread receiving ``notify(insult)``, and a thread running the callback.

    ``notify`` only queues, so the service never waits on the user's callback and a slow
    callback is not mistaken for a dead subscriber.
    """

    def __init__(self, callback: BroadcastCallback, host: str) -> None:
        self._callback = callback
        self._inbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._server = RpcServer(host, 0, SUBSCRIBER_PATH, {"notify": self._notify})
        self.url = f"http://{host}:{self._server.port}{SUBSCRIBER_PATH}"
        self._server.start()
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="subscriber-callback", daemon=True
        )
        self._dispatcher.start()

    def _notify(self, insult: object) -> bool:
        if not isinstance(insult, str):
            raise ValueError(f"insult must be a string, got {type(insult).__name__}")
        self._inbox.put(insult)
        return True

    def _dispatch(self) -> None:
        while (insult := self._inbox.get()) is not None:
            try:
                self._callback(insult)
            except Exception:
                log.exception("subscriber callback failed on %r", insult)

    def stop(self) -> None:
        """Stop receiving; insults already received are still handed to the callback."""
        self._server.stop()
        self._inbox.put(None)
        if threading.current_thread() is not self._dispatcher:
            self._dispatcher.join()


class XmlRpcFilterClient(FrontClient):
    """Client of ``/<ns>/filter``."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(_connect(settings, "filter"), settings, _SUBMIT_CHUNK_CHARS)


class XmlRpcEchoClient(EchoClient):
    """Client of ``/<ns>/echo``."""

    def __init__(self, settings: Settings) -> None:
        self._remote = _connect(settings, "echo")

    def echo(self, payload: str) -> str:
        return self._remote.call("echo", payload)

    def close(self) -> None:
        self._remote.close()
