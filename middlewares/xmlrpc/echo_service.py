"""The bare echo: ``python -m middlewares.xmlrpc.echo_service``.

One method, ``echo(payload)``, at ``http://<host>:<echo-port>/<ns>/echo`` on the same
server as the services (threads, keep-alive, no Nagle): the round trip a service call
costs before any service logic, the baseline of the stress harness.
"""

from __future__ import annotations

from middlewares.runtime import StopSignal
from middlewares.settings import Settings, from_args
from middlewares.xmlrpc._common import build_parser, run_service, serving


def echo(payload: object) -> object:
    """Return ``payload`` unchanged: no validation, no state."""
    return payload


def serve(settings: Settings) -> None:
    """Serve the echo until SIGINT or SIGTERM."""
    stop = StopSignal()
    with serving(settings, "echo", {"echo": echo}):
        stop.wait()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.xmlrpc.echo_service``."""
    parser = build_parser(
        "middlewares.xmlrpc.echo_service",
        "Serve a bare echo at http://HOST:ECHO_PORT/NAMESPACE/echo. "
        "Usually started by `python -m middlewares serve xmlrpc echo`.",
    )
    settings = from_args(parser.parse_args(argv))
    run_service("xmlrpc-echo", lambda: serve(settings))


if __name__ == "__main__":
    main()
