"""The InsultService process on Pyro4, one-node or (with ``--node-id``) a node of the
n-node form.

``python -m middlewares.pyro.insult_service --help``; the process is
:func:`middlewares.direct.services.insult_service`, shared with XML-RPC.
"""

from middlewares.direct import services
from middlewares.pyro.backend import TRANSPORT


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.pyro.insult_service``."""
    services.insult_service(TRANSPORT, argv)


if __name__ == "__main__":
    main()
