"""Fake middlewares for the stress harness's tests (tests/unit/test_stress.py).

A run pickles ``functools.partial(FakeBackend, behaviour)`` into every client process,
which must import this module before it reports ready: it is kept to the stub backend
and the contract, so a client starts in a fraction of a second rather than importing
the test module with pandas and the whole harness.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from middlewares.contract import (
    BrokerUnavailable,
    EchoClient,
    FilterClient,
    InsultClient,
    ServiceError,
)
from middlewares.settings import Settings
from middlewares.stub import StubBackend, StubEchoClient, StubFilterClient, StubInsultClient


class WrongFilterClient(StubFilterClient):
    """Answers at once, but never with the censored text."""

    def filter(self, text: str, timeout: float | None = None) -> str:
        return text + " (not filtered)"

    def wait(self, task_ids: Sequence[str], timeout: float) -> dict[str, str]:
        return {task_id: "uncensored" for task_id in task_ids}


class SilentFilterClient(StubFilterClient):
    """Accepts every task and never returns a result."""

    def wait(self, task_ids: Sequence[str], timeout: float) -> dict[str, str]:
        time.sleep(min(timeout, 0.01))
        return {}


class FakeBackend(StubBackend):
    """An in-process backend whose clients misbehave as ``behaviour`` says."""

    def __init__(self, behaviour: str = "instant") -> None:
        self.behaviour = behaviour

    def echo_client(self, settings: Settings) -> EchoClient:
        if self.behaviour == "unreachable":
            raise BrokerUnavailable("fake://nowhere", "start the fake broker")
        return {"refuse": RefusingEcho, "hang": HangingEcho}.get(self.behaviour, StubEchoClient)()

    def filter_client(self, settings: Settings) -> FilterClient:
        kind = SilentFilterClient if self.behaviour == "silent" else StubFilterClient
        return kind(settings)

    def insult_client(self, settings: Settings) -> InsultClient:
        return StubInsultClient(settings)


class RefusingEcho(StubEchoClient):
    def echo(self, payload: str) -> str:
        raise ServiceError("refused")


class HangingEcho(StubEchoClient):
    """A client that breaks the contract: its call never returns."""

    def echo(self, payload: str) -> str:
        time.sleep(3600)
        return payload
