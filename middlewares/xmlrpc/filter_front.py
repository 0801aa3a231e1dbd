"""The InsultFilter front on XML-RPC: the leased work queue, also the coordinator
of the filter's n-node form; the process of
:mod:`middlewares.direct.services`, shared with Pyro4."""

from middlewares.direct.services import run
from middlewares.xmlrpc.backend import TRANSPORT

if __name__ == "__main__":
    run(TRANSPORT, "filter_front")
