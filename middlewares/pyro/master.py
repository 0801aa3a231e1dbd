"""The n-node InsultService's master on Pyro4: the directory of live nodes, registered
as ``<ns>.insult.master``.

``python -m middlewares.pyro.master --help``; the process is
:func:`middlewares.direct.services.master`, shared with XML-RPC.
"""

from middlewares.direct import services
from middlewares.pyro.backend import TRANSPORT


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.pyro.master``."""
    services.master(TRANSPORT, argv)


if __name__ == "__main__":
    main()
