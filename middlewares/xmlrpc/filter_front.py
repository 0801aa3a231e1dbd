"""The InsultFilter front on XML-RPC: the leased work queue, also the coordinator of the
filter's n-node form.

``python -m middlewares.xmlrpc.filter_front --help``; the process is
:func:`middlewares.direct.services.filter_front`, shared with Pyro4.
"""

from middlewares.direct import services
from middlewares.xmlrpc.backend import TRANSPORT


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.xmlrpc.filter_front``."""
    services.filter_front(TRANSPORT, argv)


if __name__ == "__main__":
    main()
