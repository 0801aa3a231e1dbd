"""An InsultFilter worker on Pyro4, pulling leased batches from the front
(``--worker-id`` or ``--node-id``); the process of
:mod:`middlewares.direct.services`, shared with XML-RPC."""

from middlewares.direct.services import run
from middlewares.pyro.backend import TRANSPORT

if __name__ == "__main__":
    run(TRANSPORT, "filter_worker")
