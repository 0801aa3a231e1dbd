"""The bare echo on Pyro4: the round trip a service call costs before any service logic.

``python -m middlewares.pyro.echo_service --help``; the process is
:func:`middlewares.direct.services.echo_service`, shared with XML-RPC.
"""

from middlewares.direct import services
from middlewares.pyro.backend import TRANSPORT


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.pyro.echo_service``."""
    services.echo_service(TRANSPORT, argv)


if __name__ == "__main__":
    main()
