"""The n-node InsultService's master on Pyro4: the directory of live nodes; the process of
:mod:`middlewares.direct.services`, shared with XML-RPC."""

from middlewares.direct.services import run
from middlewares.pyro.backend import TRANSPORT

if __name__ == "__main__":
    run(TRANSPORT, "master")
