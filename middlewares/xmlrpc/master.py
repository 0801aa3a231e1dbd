"""The n-node InsultService's master on XML-RPC: the directory of live nodes, at the
InsultService's URL.

``python -m middlewares.xmlrpc.master --help``; the process is
:func:`middlewares.direct.services.master`, shared with Pyro4.
"""

from middlewares.direct import services
from middlewares.xmlrpc.backend import TRANSPORT


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.xmlrpc.master``."""
    services.master(TRANSPORT, argv)


if __name__ == "__main__":
    main()
