"""The InsultFilter and echo clients of the direct middlewares: the same calls on either
transport, over a :class:`~middlewares.direct.transport.Link`."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from middlewares.contract import BrokerUnavailable, EchoClient, FilterClient
from middlewares.direct.checks import MAX_BATCH, MAX_WAIT, new_task_id
from middlewares.direct.queue import MAX_OUTSTANDING, MAX_UNCOLLECTED
from middlewares.direct.transport import Link
from middlewares.settings import Settings

log = logging.getLogger(__name__)

#: Pause between two attempts to reach a front that is restarting.
_RETRY_PAUSE = 0.1

#: Most unanswered tasks a client remembers for resubmission: what a front holds at most.
MAX_REMEMBERED = MAX_OUTSTANDING + MAX_UNCOLLECTED

Result = TypeVar("Result")


class FrontClient(FilterClient):
    """Client of a queue front (XML-RPC and Pyro4 filters): the same calls on either
    transport, given a :class:`Link` to the front.

    ``chunk_chars`` bounds the text in one ``submit_tasks`` call, below the transport's
    message-size limit.

    It survives a restart of the front: tasks go out under ids chosen here
    (``submit_tasks``), the texts of those not answered yet are kept, and when the
    front says it does not know some of them (``wait_tasks``: a restarted front of the
    one-node form, whose queue died with it) they are submitted again under the same
    ids. A call that cannot reach the front is repeated, for up to ``settings.timeout``,
    while the launcher restarts it; every call is safe to repeat (a task submitted twice
    under one id is queued once). So an accepted task is answered exactly once. At most
    once (``settings.guarantee``) the texts are not kept and nothing is submitted again:
    what a restarted front lost stays lost, and its ids are never answered.
    """

    def __init__(self, front: Link, settings: Settings, chunk_chars: int) -> None:
        self._remote = front
        self._settings = settings
        self._chunk_chars = chunk_chars
        # Text of every task submitted and not answered yet, oldest first; at most once
        # nothing is kept, as nothing a restarted front lost is submitted again.
        self._unanswered: OrderedDict[str, str] = OrderedDict()
        self._resubmit = settings.guarantee == "at-least-once"

    def submit(self, text: str) -> str:
        return self.submit_many([text])[0]

    def submit_many(self, texts: Sequence[str]) -> list[str]:
        tasks = {new_task_id(): text for text in texts}
        self._submit(tasks)
        return list(tasks)

    def _submit(self, tasks: Mapping[str, str]) -> None:
        for chunk in _chunks(tasks, self._chunk_chars):
            self._surviving(lambda chunk=chunk: self._remote.call("submit_tasks", chunk))
            if self._resubmit:
                self._unanswered.update(chunk)
        overflow = len(self._unanswered) - MAX_REMEMBERED
        if overflow > 0:
            log.warning("forgetting %d unanswered tasks, the oldest, for resubmission", overflow)
            for _ in range(overflow):
                self._unanswered.popitem(last=False)

    def wait(self, task_ids: Sequence[str], timeout: float) -> dict[str, str]:
        ids = list(task_ids)
        if len(ids) <= MAX_BATCH:
            return self._wait_tasks(ids, timeout)
        # Too many ids for one call: look at all of them, then block on the oldest,
        # which the queue finishes first.
        done: dict[str, str] = {}
        for start in range(0, len(ids), MAX_BATCH):
            done.update(self._wait_tasks(ids[start : start + MAX_BATCH], 0))
        return done or self._wait_tasks(ids[:MAX_BATCH], timeout)

    def _wait_tasks(self, ids: list[str], timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            # The front blocks at most MAX_WAIT per call.
            wait = min(max(deadline - time.monotonic(), 0.0), MAX_WAIT)
            reply = self._surviving(
                lambda wait=wait: self._remote.call("wait_tasks", ids, wait, wait=wait), wait
            )
            done: dict[str, str] = reply["done"]
            for task_id in done:
                self._unanswered.pop(task_id, None)
            lost = {t: self._unanswered[t] for t in reply["unknown"] if t in self._unanswered}
            if lost:
                log.warning(
                    "the front lost %d tasks (it restarted); submitting them again", len(lost)
                )
                self._submit(lost)
            if done or time.monotonic() >= deadline:
                return done

    def filter(self, text: str, timeout: float | None = None) -> str:
        """Submit and wait in one round trip: the front blocks until the result is in."""
        wait = self.default_timeout if timeout is None else timeout
        if not 0 <= wait <= MAX_WAIT:
            return super().filter(text, timeout)
        task_id = new_task_id()
        deadline = time.monotonic() + wait

        def call() -> str:
            remaining = min(max(deadline - time.monotonic(), 0.0), wait)
            return self._remote.call("filter", text, remaining, task_id, wait=remaining)

        return self._surviving(call, wait)

    def get_results(self, limit: int = 100) -> list[str]:
        return self._surviving(lambda: self._remote.call("get_results", limit))

    def _surviving(self, call: Callable[[], Result], wait: float = 0.0) -> Result:
        """``call()``, repeated while the front cannot be reached, for up to the settings'
        timeout (plus ``wait``, how long the call blocks on purpose)."""
        deadline = time.monotonic() + self._settings.timeout + wait
        while True:
            try:
                return call()
            except BrokerUnavailable:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(_RETRY_PAUSE)

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


def _chunks(tasks: Mapping[str, str], max_chars: int) -> list[dict[str, str]]:
    """Split tasks into as few submit_tasks calls as the message-size limit allows."""
    chunks: list[dict[str, str]] = [{}]
    size = 0
    for task_id, text in tasks.items():
        length = len(text) if isinstance(text, str) else 1
        if chunks[-1] and (size + length > max_chars or len(chunks[-1]) >= MAX_BATCH):
            chunks.append({})
            size = 0
        chunks[-1][task_id] = text
        size += length
    return [chunk for chunk in chunks if chunk]
