"""The journal of an n-node filter front of XML-RPC and Pyro4, in Redis: every task it
accepted, until its result is collected, so that a restarted front serves them all."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import redis

from middlewares.cluster.keys import Keys
from middlewares.contract import StoreUnavailable

#: Fields read per HSCAN round trip when a restarted front loads its journal.
_SCAN_COUNT = 1000


class RedisJournal:
    """A :class:`~middlewares.direct.queue.Journal` in the hash ``<ns>:front:tasks``
    (task id -> text). A failing Redis raises
    :class:`~middlewares.contract.StoreUnavailable`: the submission is refused, to be
    retried, rather than accepted and not kept."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self._client = client
        self._key = Keys(namespace).front_tasks

    def add(self, tasks: Mapping[str, str]) -> None:
        """Keep these tasks, in one round trip."""
        with _journal_errors():
            self._client.hset(self._key, mapping=dict(tasks))

    def remove(self, task_ids: Sequence[str]) -> None:
        """Forget these tasks, in one round trip."""
        if task_ids:
            with _journal_errors():
                self._client.hdel(self._key, *task_ids)

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
