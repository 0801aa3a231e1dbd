"""Pyro4's own name server, run with this package's configuration (serpent only).

``python -m Pyro4.naming`` would also accept marshal-serialized requests, compressed
messages and anyone's registrations; run through this module it accepts serpent alone,
on a daemon bounded like every other of the package (see :mod:`.daemon`), and only the
processes holding the deployment secret may register or remove names:
``INSULTBENCH_SECRET=... python -m middlewares.pyro.name_server -n 127.0.0.1 -p 9090``
(the launcher starts it so).

Two launchers started at once both find no name server and both start one. The one that
cannot bind the port does not fail its deployment: while another name server answers
there it stands by, and takes over if that one stops (the services register their names
again on their own, see :func:`middlewares.pyro.transport.publish`).
"""

from __future__ import annotations

import argparse
import logging
import threading

from middlewares.pyro.daemon import BoundedNameServerDaemon
from middlewares.pyro.transport import configure, name_server_answers
from middlewares.runtime import StopSignal, configure_logging, run_main
from middlewares.secret import deployment_secret
from middlewares.settings import Settings

log = logging.getLogger(__name__)

#: Seconds between two attempts to take over from another name server.
STANDBY_RETRY = 1.0


def serve(host: str, port: int) -> int:
    """Serve the name server at ``host:port`` until SIGINT or SIGTERM."""
    configure()
    secret = deployment_secret("the Pyro4 name server")
    stop = StopSignal()
    standing_by = False
    while not stop.is_set():
        try:
            daemon = BoundedNameServerDaemon(host, port, secret)
        except OSError as error:
            if not name_server_answers(Settings(coordinator_host=host, pyro_ns_port=port)):
                log.error("cannot serve on %s:%d: %s", host, port, error)
                return 1
            if not standing_by:
                log.info("a name server already answers at %s:%d; standing by", host, port)
                standing_by = True
            stop.wait(STANDBY_RETRY)
            continue
        log.info("name server running at %s", daemon.locationStr)
        threading.Thread(target=daemon.requestLoop, name="name-server", daemon=True).start()
        stop.wait()
        daemon.shutdown()
    return 0


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.pyro.name_server``."""
    parser = argparse.ArgumentParser(
        prog="python -m middlewares.pyro.name_server",
        description="Run a Pyro4 name server that accepts serpent only. Usually started by "
        "`python -m middlewares serve pyro <service>` when none answers.",
    )
    parser.add_argument("-n", "--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("-p", "--port", type=int, default=9090, help="port to bind")
    args = parser.parse_args(argv)
    configure_logging("pyro-name-server")
    run_main(lambda: serve(args.host, args.port))


if __name__ == "__main__":
    main()
