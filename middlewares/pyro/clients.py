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

import threading

import Pyro4

from middlewares.contract import BroadcastCallback, EchoClient
from middlewares.direct import MASTER_TIMEOUT, DirectInsultClient, NodePool, Subscription
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

#: Characters of text per submit_many round trip; keeps messages far below Pyro4's limit.
_SUBMIT_CHUNK_CHARS = 4 * 1024 * 1024


class PyroInsultClient(DirectInsultClient):
    """Client of the nodes listed by ``<ns>.insult.master``, or of ``<ns>.insult.service``.

    In the n-node form a call that cannot reach its node is retried on another one for
    up to ``settings.timeout``; see :class:`~middlewares.direct.NodePool` for why that is
    safe, and for ``add_insult``'s one corner (False for an insult that was new when its
    first attempt was applied just before its node died).
    """

    def __init__(self, settings: Settings) -> None:
        master: Remote | None = Remote(
            settings,
            object_name(settings, INSULT_MASTER),
            serve_hint("insult --nodes N"),
            timeout=min(settings.timeout, MASTER_TIMEOUT),
        )
        try:
            master.connect()
        except NotRegistered:
            master.close()
            master = None
        self._master = master
        super().__init__(self._node_pool(settings, master))
        try:
            self._nodes.connect()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _node_pool(settings: Settings, master: Remote | None) -> NodePool:
        def connect(address: str) -> Remote:
            return Remote(settings, address, serve_hint("insult"))

        if master is None:
            service = object_name(settings, INSULT_SERVICE)
            return NodePool(
                lambda: [service], connect, settings.timeout, service, failover=False
            )
        return NodePool(lambda: master.call("nodes"), connect, settings.timeout, master.uri)

    def _subscription(self, callback: BroadcastCallback, host: str) -> Subscription:
        return _Subscription(callback, host)

    def close(self) -> None:
        super().close()
        if self._master is not None:
            self._master.close()


@Pyro4.expose
class BroadcastListener:
    """The subscriber object the service calls: ``notify`` hands over to the subscription."""

    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription

    def notify(self, insult: object) -> bool:
        """Receive one broadcast insult."""
        return self._subscription.notify(insult)


class _Subscription(Subscription):
    """A subscriber served by a Pyro4 daemon of its own, on a thread."""

    def __init__(self, callback: BroadcastCallback, host: str) -> None:
        self._daemon = Pyro4.Daemon(host=host, port=0)
        self.address = str(self._daemon.register(BroadcastListener(self)))
        super().__init__(callback)
        threading.Thread(
            target=self._daemon.requestLoop, name="subscriber-daemon", daemon=True
        ).start()

    def _stop_server(self) -> None:
        self._daemon.shutdown()


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
