"""The InsultFilter front on Pyro4: the leased work queue, also the coordinator
of the filter's n-node form; the process of
:mod:`middlewares.direct.services`, shared with XML-RPC."""

from middlewares.direct.services import run
from middlewares.pyro.backend import TRANSPORT

if __name__ == "__main__":
    run(TRANSPORT, "filter_front")
