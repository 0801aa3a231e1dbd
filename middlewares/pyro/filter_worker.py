"""An InsultFilter worker on Pyro4, pulling leased batches from the front
(``--worker-id`` or ``--node-id``).

``python -m middlewares.pyro.filter_worker --help``; the process is
:func:`middlewares.direct.services.filter_worker`, shared with XML-RPC.
"""

from middlewares.direct import services
from middlewares.pyro.backend import TRANSPORT


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.pyro.filter_worker``."""
    services.filter_worker(TRANSPORT, argv)


if __name__ == "__main__":
    main()
