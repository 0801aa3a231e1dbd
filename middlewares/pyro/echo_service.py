"""The bare echo on Pyro4: the round trip a service call costs before any
service logic; the process of
:mod:`middlewares.direct.services`, shared with XML-RPC."""

from middlewares.direct.services import run
from middlewares.pyro.backend import TRANSPORT

if __name__ == "__main__":
    run(TRANSPORT, "echo_service")
