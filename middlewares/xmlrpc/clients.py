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

from typing import Any

from middlewares.contract import BroadcastCallback, EchoClient
from middlewares.direct import MASTER_TIMEOUT, DirectInsultClient, NodePool, Subscription
from middlewares.settings import Settings
from middlewares.workqueue import FrontClient
from middlewares.xmlrpc._common import (
    MethodNotFound,
    Remote,
    RpcServer,
    serve_hint,
    service_url,
)

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


class XmlRpcInsultClient(DirectInsultClient):
    """Client of ``/<ns>/insult``: the one-node service, or the nodes of the n-node form."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(InsultNodes(settings))

    def _subscription(self, callback: BroadcastCallback, host: str) -> Subscription:
        return _Subscription(callback, host)


class _Subscription(Subscription):
    """A subscriber served by an XML-RPC server of its own at ``SUBSCRIBER_PATH``."""

    def __init__(self, callback: BroadcastCallback, host: str) -> None:
        self._server = RpcServer(host, 0, SUBSCRIBER_PATH, {"notify": self.notify})
        self.address = f"http://{host}:{self._server.port}{SUBSCRIBER_PATH}"
        super().__init__(callback)
        self._server.start()

    def _stop_server(self) -> None:
        self._server.stop()


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
