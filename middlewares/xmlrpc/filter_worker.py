"""An InsultFilter worker on XML-RPC, pulling leased batches from the front
(``--worker-id`` or ``--node-id``); the process of
:mod:`middlewares.direct.services`, shared with Pyro4."""

from middlewares.direct.services import run
from middlewares.xmlrpc.backend import TRANSPORT

if __name__ == "__main__":
    run(TRANSPORT, "filter_worker")
