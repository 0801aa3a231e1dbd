"""A middleware with no transport at all, as dramatiq's ``StubBroker``: every call is
answered at once, in the calling process, with the service's own logic.

It is what the load generator is calibrated against (a run measures only the harness's
own cost per operation) and what unit tests use to exercise harness and report logic
without any broker. ``get_backend("stub")`` finds it; it is never one of the compared
middlewares.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from middlewares.contract import (
    Backend,
    BroadcastCallback,
    EchoClient,
    FilterClient,
    InsultClient,
    ProcessSpec,
    Profile,
)
from middlewares.core import Censor, InsultStore, load_default_insults
from middlewares.settings import Settings


class StubInsultClient(InsultClient):
    """An InsultService of this client's own, in memory; it never broadcasts."""

    def __init__(self, settings: Settings) -> None:
        self._store = InsultStore(load_default_insults(), settings.limits)

    def add_insult(self, insult: str) -> bool:
        return self._store.add(insult)

    def get_insults(self) -> list[str]:
        return self._store.all()

    def random_insult(self) -> str:
        return self._store.random()

    def subscribe(self, callback: BroadcastCallback) -> None:
        """A stub has no broadcasts."""

    def unsubscribe(self) -> None:
        """Nothing to undo."""

    def close(self) -> None:
        """Nothing to release."""


class StubFilterClient(FilterClient):
    """Finishes every task the moment it is submitted, censored with the default insults.

    Censored texts are remembered by text, so a workload that repeats its texts costs
    one dictionary lookup per task, which is what a calibration of the harness wants.
    """

    def __init__(self, settings: Settings) -> None:
        self._insults = load_default_insults()
        self._censor = Censor()
        self._censored: dict[str, str] = {}
        self._done: dict[str, str] = {}
        self._ids = map(str, itertools.count())
        self._timeout = settings.timeout

    def submit(self, text: str) -> str:
        task_id = next(self._ids)
        censored = self._censored.get(text)
        if censored is None:
            censored = self._censored[text] = self._censor.censor(text, self._insults)
        self._done[task_id] = censored
        return task_id

    def submit_many(self, texts: Sequence[str]) -> list[str]:
        return [self.submit(text) for text in texts]

    def wait(self, task_ids: Sequence[str], timeout: float) -> dict[str, str]:
        return {task_id: self._done.pop(task_id) for task_id in task_ids if task_id in self._done}

    def get_results(self, limit: int = 100) -> list[str]:
        return []

    @property
    def default_timeout(self) -> float:
        return self._timeout

    def close(self) -> None:
        """Nothing to release."""


class StubEchoClient(EchoClient):
    """Returns the payload at once."""

    def echo(self, payload: str) -> str:
        return payload

    def close(self) -> None:
        """Nothing to release."""


class StubBackend(Backend):
    """The middleware of :mod:`middlewares.stub`: no processes, no broker."""

    name = "stub"
    profile = Profile(
        label="stub",
        colour="#999999",
        coupling="none: in the calling process",
        broker_processes=(),
        mechanism="No transport: every call is answered in the calling process.",
        insult_path="nothing",
        filter_path="nothing",
    )

    def check(self, settings: Settings) -> None:
        """Always reachable."""

    def processes(self, service: str, settings: Settings, workers: int) -> list[ProcessSpec]:
        return []

    def insult_client(self, settings: Settings) -> StubInsultClient:
        return StubInsultClient(settings)

    def filter_client(self, settings: Settings) -> StubFilterClient:
        return StubFilterClient(settings)

    def echo_client(self, settings: Settings) -> StubEchoClient:
        return StubEchoClient()

    def cleanup(self, settings: Settings, service: str | None = None) -> list[str]:
        """Nothing was created."""
        return []


BACKEND = StubBackend()
