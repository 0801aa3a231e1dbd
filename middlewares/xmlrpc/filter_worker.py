"""An InsultFilter worker on XML-RPC, pulling leased batches from the front
(``--worker-id`` or ``--node-id``).

``python -m middlewares.xmlrpc.filter_worker --help``; the process is
:func:`middlewares.direct.services.filter_worker`, shared with Pyro4.
"""

from middlewares.direct import services
from middlewares.xmlrpc.backend import TRANSPORT


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.xmlrpc.filter_worker``."""
    services.filter_worker(TRANSPORT, argv)


if __name__ == "__main__":
    main()
