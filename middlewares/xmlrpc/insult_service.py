"""The InsultService process on XML-RPC, one-node or (with ``--node-id``) a node of the
n-node form.

``python -m middlewares.xmlrpc.insult_service --help``; the process is
:func:`middlewares.direct.services.insult_service`, shared with Pyro4.
"""

from middlewares.direct import services
from middlewares.xmlrpc.backend import TRANSPORT


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.xmlrpc.insult_service``."""
    services.insult_service(TRANSPORT, argv)


if __name__ == "__main__":
    main()
