"""An InsultFilter worker on Redis: ``python -m middlewares.redis.filter_worker``.

There is no front process: clients LPUSH tasks on ``<ns>:filter:tasks`` and any number
of these workers compete for them through the reliable queue of
:mod:`middlewares.redis.transport`; in the n-node form each worker is one node. Each
result is pushed, in the same atomic step that removes its task from the worker's
processing list, on the task's ``reply_to`` list and on the bounded result list
``<ns>:filter:results``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

from middlewares.cluster.client import connect, redis_errors_as_unavailable
from middlewares.cluster.keys import Keys
from middlewares.cluster.store import RedisInsultStore
from middlewares.core import InsultError
from middlewares.redis.plain import open_consumer
from middlewares.redis.transport import (
    Ack,
    Answer,
    consume,
    each_message,
    encode,
    reply_address,
)
from middlewares.runtime import ServiceProcess, service_main
from middlewares.service import FilterStep

log = logging.getLogger(__name__)

#: Seconds a reply list lives after its last result. Long, because a client may submit
#: a large batch and collect it later; the list holds only that client's results.
FILTER_REPLY_TTL = 3600


def store_reader(client: redis.Redis, namespace: str) -> Callable[[], list[str] | None]:
    """Reads the InsultService's set; None (use the defaults) while it is empty, which
    in Redis is the same as not existing."""
    store = RedisInsultStore(client, namespace)
    return lambda: store.all() or None


def _answerer(step: FilterStep, keys: Keys) -> Answer:
    """Censors a task into an acknowledgement carrying its result."""

    def answer(raw: bytes, task: dict[str, Any]) -> Ack:
        reply_to = reply_address(task, keys, required=False)
        task_id = task.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise InsultError("task id must be a non-empty string")
        censored = step.censor(task.get("text"))
        result = encode({"id": task_id, "ok": True, "text": censored})
        return Ack(raw, reply_to, result if reply_to else b"", log_entry=result)

    return answer


def serve(process: ServiceProcess) -> None:
    """Censor tasks until stopped; then acknowledge what is held and exit. A lost Redis
    ends the process with one line (the launcher restarts it)."""
    settings = process.settings
    with redis_errors_as_unavailable(settings):
        keys = Keys(settings.namespace)
        client = connect(settings)
        step = FilterStep(settings, store_reader(client, settings.namespace))
        consumer = open_consumer(
            client,
            keys.filter,
            str(process.node_id),
            settings,
            reply_ttl=FILTER_REPLY_TTL,
            # A result list of size 0 is none at all (LTRIM 0 -1 would keep everything).
            log_key=keys.results if settings.result_limit > 0 else None,
            log_length=settings.result_limit,
        )
        log.info("censoring tasks from %s", keys.filter.queue)
        handler = each_message(settings, _answerer(step, keys), between=consumer.keep_alive)
        consume(consumer, handler, process.stop)
    log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -m middlewares.redis.filter_worker --node-id ID [settings]``."""
    service_main(
        "middlewares.redis.filter_worker",
        "An InsultFilter worker on Redis (one node of the filter): censors "
        "<ns>:filter:tasks until SIGINT/SIGTERM.",
        serve,
        node_id="required",
        argv=argv,
    )


if __name__ == "__main__":
    main()
