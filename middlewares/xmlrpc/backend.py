"""The XML-RPC backend: which processes make up each service, and its clients."""

from __future__ import annotations

from middlewares.direct import DirectBackend
from middlewares.settings import Settings
from middlewares.xmlrpc.clients import XmlRpcEchoClient, XmlRpcFilterClient, XmlRpcInsultClient


class XmlRpcBackend(DirectBackend):
    """Standard-library XML-RPC servers, one per service, on the settings' ports; in the
    n-node form the master listens on the insult port and each node on a port of its
    own (see :class:`~middlewares.direct.DirectBackend` for the processes)."""

    name = "xmlrpc"
    package = "middlewares.xmlrpc"

    def check(self, settings: Settings) -> None:
        """Nothing to check: XML-RPC needs no broker; a service reports a taken port itself."""

    def insult_client(self, settings: Settings) -> XmlRpcInsultClient:
        return XmlRpcInsultClient(settings)

    def filter_client(self, settings: Settings) -> XmlRpcFilterClient:
        return XmlRpcFilterClient(settings)

    def echo_client(self, settings: Settings) -> XmlRpcEchoClient:
        return XmlRpcEchoClient(settings)


BACKEND = XmlRpcBackend()
