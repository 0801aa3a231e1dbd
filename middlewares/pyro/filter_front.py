"""The InsultFilter front on Pyro4: the leased work queue, also the coordinator of the
filter's n-node form.

``python -m middlewares.pyro.filter_front --help``; the process is
:func:`middlewares.direct.services.filter_front`, shared with XML-RPC.
"""

from middlewares.direct import services
from middlewares.pyro.backend import TRANSPORT


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.pyro.filter_front``."""
    services.filter_front(TRANSPORT, argv)


if __name__ == "__main__":
    main()
