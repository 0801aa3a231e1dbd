"""The InsultFilter and echo clients of the direct middlewares: the same calls on either
transport, over a :class:`~middlewares.direct.transport.Link`."""

from __future__ import annotations

import time
from collections.abc import Sequence

from middlewares.contract import EchoClient, FilterClient
from middlewares.direct.checks import MAX_BATCH, MAX_WAIT
from middlewares.direct.transport import Link
from middlewares.settings import Settings


class FrontClient(FilterClient):
    """Client of a queue front (XML-RPC and Pyro4 filters): the same calls on either
    transport, given a :class:`Link` to the front.

    ``chunk_chars`` bounds the text in one ``submit_many`` call, below the transport's
    message-size limit.
    """

    def __init__(self, front: Link, settings: Settings, chunk_chars: int) -> None:
        self._remote = front
        self._settings = settings
        self._chunk_chars = chunk_chars

    def submit(self, text: str) -> str:
        return self._remote.call("submit", text)

    def submit_many(self, texts: Sequence[str]) -> list[str]:
        ids: list[str] = []
        for chunk in _chunks(texts, self._chunk_chars):
            ids += self._remote.call("submit_many", chunk)
        return ids

    def wait(self, task_ids: Sequence[str], timeout: float) -> dict[str, str]:
        ids = list(task_ids)
        if len(ids) <= MAX_BATCH:
            return self._wait_results(ids, timeout)
        # Too many ids for one call: look at all of them, then block on the oldest,
        # which the queue finishes first.
        done: dict[str, str] = {}
        for start in range(0, len(ids), MAX_BATCH):
            done.update(self._wait_results(ids[start : start + MAX_BATCH], 0))
        return done or self._wait_results(ids[:MAX_BATCH], timeout)

    def _wait_results(self, ids: list[str], timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            # The front blocks at most MAX_WAIT per call.
            wait = min(max(deadline - time.monotonic(), 0.0), MAX_WAIT)
            done = self._remote.call("wait_results", ids, wait, wait=wait)
            if done or wait < MAX_WAIT:
                return done

    def result(self, task_id: str) -> str | None:
        return self._remote.call("result", task_id) or None

    def filter(self, text: str, timeout: float | None = None) -> str:
        """Submit and wait in one round trip: the front blocks until the result is in."""
        wait = self.default_timeout if timeout is None else timeout
        if not 0 <= wait <= MAX_WAIT:
            return super().filter(text, timeout)
        return self._remote.call("filter", text, wait, wait=wait)

    def get_results(self, limit: int = 100) -> list[str]:
        return self._remote.call("get_results", limit)

    @property
    def default_timeout(self) -> float:
        return self._settings.timeout

    def close(self) -> None:
        self._remote.close()


class DirectEchoClient(EchoClient):
    """Client of the bare echo of a direct middleware."""

    def __init__(self, echo: Link) -> None:
        self._remote = echo

    def echo(self, payload: str) -> str:
        return self._remote.call("echo", payload)

    def close(self) -> None:
        self._remote.close()


def _chunks(texts: Sequence[str], max_chars: int) -> list[list[str]]:
    """Split texts into as few submit_many calls as the message-size limit allows."""
    chunks: list[list[str]] = [[]]
    size = 0
    for text in texts:
        length = len(text) if isinstance(text, str) else 1
        if chunks[-1] and (size + length > max_chars or len(chunks[-1]) >= MAX_BATCH):
            chunks.append([])
            size = 0
        chunks[-1].append(text)
        size += length
    return [chunk for chunk in chunks if chunk]
