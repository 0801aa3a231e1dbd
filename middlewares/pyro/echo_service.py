"""The bare echo: ``python -m middlewares.pyro.echo_service``.

One object registered as ``<ns>.echo`` on the same kind of daemon as the services, whose
``echo(payload)`` returns its argument: the round trip a service call costs before any
service logic, the baseline of the stress harness.
"""

from __future__ import annotations

import Pyro4

from middlewares.pyro._common import ECHO, build_parser, publish, run_service
from middlewares.runtime import StopSignal
from middlewares.settings import Settings, from_args


@Pyro4.expose
class Echo:
    """The remote object: no validation, no state."""

    def echo(self, payload: object) -> object:
        """Return ``payload`` unchanged."""
        return payload


def serve(settings: Settings) -> None:
    """Publish the echo object until SIGINT or SIGTERM."""
    stop = StopSignal()
    with publish(settings, {ECHO: Echo()}):
        stop.wait()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.pyro.echo_service``."""
    parser = build_parser(
        "middlewares.pyro.echo_service",
        "Serve a bare echo as <namespace>.echo in a Pyro4 name server. "
        "Usually started by `python -m middlewares serve pyro echo`.",
    )
    settings = from_args(parser.parse_args(argv))
    run_service("pyro-echo", lambda: serve(settings))


if __name__ == "__main__":
    main()
