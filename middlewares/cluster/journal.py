"""The journal of an n-node filter front of XML-RPC and Pyro4, in Redis: every task it
accepted, until its result is collected, so that a restarted front serves them all."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import redis

from middlewares.cluster.keys import Keys
from middlewares.contract import StoreUnavailable

log = logging.getLogger(__name__)

#: Fields read per HSCAN round trip when a restarted front loads its journal.
_SCAN_COUNT = 1000

#: Seconds between two removals of collected tasks, each one HDEL of all since the last.
REMOVAL_INTERVAL = 0.05

#: Most task ids in one HDEL.
_REMOVAL_BATCH = 10_000


class RedisJournal:
    """A :class:`~middlewares.direct.queue.Journal` in the hash ``<ns>:front:tasks``
    (task id -> text). A failing Redis raises
    :class:`~middlewares.contract.StoreUnavailable`: the submission is refused, to be
    retried, rather than accepted and not kept.

    Adding is one round trip before the submission is answered. Removing is not on the
    way of any answer: collected tasks are removed every :data:`REMOVAL_INTERVAL`
    seconds, in one HDEL, so that a busy front pays one round trip for hundreds of
    results. A front that dies in between leaves those last tasks in the journal; its
    successor computes them again and keeps results nobody asks for (each was handed out
    once already), until they are dropped as uncollected.
    """

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self._client = client
        self._key = Keys(namespace).front_tasks
        self._collected: list[str] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._remover = threading.Thread(target=self._remove_collected, name="journal")
        self._remover.start()

    def add(self, tasks: Mapping[str, str]) -> None:
        """Keep these tasks, in one round trip."""
        with _journal_errors():
            self._client.hset(self._key, mapping=dict(tasks))

    def remove(self, task_ids: Sequence[str]) -> None:
        """Forget these tasks, with the next removal."""
        with self._lock:
            self._collected.extend(task_ids)

    def close(self) -> None:
        """Remove what was collected, and stop."""
        self._closed.set()
        self._remover.join()

    def _remove_collected(self) -> None:
        while not self._closed.wait(REMOVAL_INTERVAL):
            self._flush()
        self._flush()

    def _flush(self) -> None:
        with self._lock:
            collected, self._collected = self._collected, []
        try:
            for start in range(0, len(collected), _REMOVAL_BATCH):
                self._client.hdel(self._key, *collected[start : start + _REMOVAL_BATCH])
        except redis.RedisError as error:
            log.warning("could not remove %d collected tasks: %s", len(collected), error)

    def load(self) -> dict[str, str]:
        """Every task kept."""
        with _journal_errors():
            return {
                task_id.decode(): text.decode()
                for task_id, text in self._client.hscan_iter(self._key, count=_SCAN_COUNT)
            }


@contextmanager
def _journal_errors() -> Iterator[None]:
    try:
        yield
    except redis.RedisError as error:
        raise StoreUnavailable(
            f"the filter front's journal (Redis) failed: {error}; retry"
        ) from None
