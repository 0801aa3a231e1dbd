"""The InsultService process on Pyro4, one-node or (with ``--node-id``) a node of
the n-node form; the process of
:mod:`middlewares.direct.services`, shared with XML-RPC."""

from middlewares.direct.services import run
from middlewares.pyro.backend import TRANSPORT

if __name__ == "__main__":
    run(TRANSPORT, "insult_service")
