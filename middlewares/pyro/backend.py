"""The Pyro4 backend: which processes make up each service, and its clients."""

from __future__ import annotations

import Pyro4.errors

from middlewares.contract import BrokerUnavailable, ProcessSpec
from middlewares.direct import DirectBackend
from middlewares.pyro._common import configure, name_server, name_server_answers
from middlewares.pyro.clients import PyroEchoClient, PyroFilterClient, PyroInsultClient
from middlewares.settings import Settings


class PyroBackend(DirectBackend):
    """Pyro4 objects found through a name server, which the launcher starts when none
    answers (see :class:`~middlewares.direct.DirectBackend` for the processes)."""

    name = "pyro"
    package = "middlewares.pyro"

    def check(self, settings: Settings) -> None:
        """Nothing to check: Pyro4 needs no broker, and a missing name server is started."""
        configure()

    def insult_client(self, settings: Settings) -> PyroInsultClient:
        return PyroInsultClient(settings)

    def filter_client(self, settings: Settings) -> PyroFilterClient:
        return PyroFilterClient(settings)

    def echo_client(self, settings: Settings) -> PyroEchoClient:
        return PyroEchoClient(settings)

    def cleanup(self, settings: Settings) -> None:
        """Remove every name of the namespace from the name server, if one answers, and
        the n-node form's keys from Redis, if it answers."""
        configure()
        super().cleanup(settings)
        try:
            ns = name_server(settings.with_changes(timeout=min(settings.timeout, 2.0)))
        except BrokerUnavailable:
            return  # no name server, no names
        try:
            ns.remove(prefix=f"{settings.namespace}.")
        except Pyro4.errors.CommunicationError:
            pass  # it went away meanwhile, and its names with it
        finally:
            ns._pyroRelease()

    def _support_processes(self, settings: Settings) -> list[ProcessSpec]:
        """A name server, when none answers."""
        if name_server_answers(settings):
            return []
        return [
            ProcessSpec(
                "pyro-name-server",
                "middlewares.pyro.name_server",
                ["-n", settings.host, "-p", str(settings.pyro_ns_port)],
                role="support",
            )
        ]


BACKEND = PyroBackend()
