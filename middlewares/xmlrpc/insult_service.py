"""The InsultService process on XML-RPC, one-node or (with ``--node-id``) a node of
the n-node form; the process of
:mod:`middlewares.direct.services`, shared with Pyro4."""

from middlewares.direct.services import run
from middlewares.xmlrpc.backend import TRANSPORT

if __name__ == "__main__":
    run(TRANSPORT, "insult_service")
