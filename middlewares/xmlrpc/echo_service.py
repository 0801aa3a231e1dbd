"""The bare echo on XML-RPC: the round trip a service call costs before any service logic.

``python -m middlewares.xmlrpc.echo_service --help``; the process is
:func:`middlewares.direct.services.echo_service`, shared with Pyro4.
"""

from middlewares.direct import services
from middlewares.xmlrpc.backend import TRANSPORT


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.xmlrpc.echo_service``."""
    services.echo_service(TRANSPORT, argv)


if __name__ == "__main__":
    main()
