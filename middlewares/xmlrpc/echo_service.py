"""The bare echo on XML-RPC: the round trip a service call costs before any
service logic; the process of
:mod:`middlewares.direct.services`, shared with Pyro4."""

from middlewares.direct.services import run
from middlewares.xmlrpc.backend import TRANSPORT

if __name__ == "__main__":
    run(TRANSPORT, "echo_service")
