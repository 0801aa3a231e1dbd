"""The n-node InsultService's master on XML-RPC: the directory of live nodes; the process of
:mod:`middlewares.direct.services`, shared with Pyro4."""

from middlewares.direct.services import run
from middlewares.xmlrpc.backend import TRANSPORT

if __name__ == "__main__":
    run(TRANSPORT, "master")
