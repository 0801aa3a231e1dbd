"""Clients of the Redis services: plain redis-py, one connection pool per client.

A request is an LPUSH on the service's list, pipelined with the BLPOP that waits for its
reply on the client's own reply list, so a call costs one round trip to Redis.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import redis

from middlewares.broadcast import BrokerSubscriptionClient
from middlewares.cluster.client import REDIS_DOWN, connect, redis_errors_as_unavailable
from middlewares.cluster.keys import Keys, QueueKeys
from middlewares.contract import (
    BroadcastCallback,
    EchoClient,
    FilterClient,
    ServiceError,
    ServiceTimeout,
)
from middlewares.core import InsultError, validate_limit
from middlewares.settings import Settings

log = logging.getLogger(__name__)

#: Most replies taken from a reply list in one round trip.
_DRAIN = 1000

#: Most tasks sent in one LPUSH by ``submit_many``.
_PUSH_CHUNK = 1000

#: How long the subscriber thread waits for a message before checking for a stop.
_SUBSCRIBER_POLL = 0.2


class _Link:
    """A client's connection and private reply list; the request/reply plumbing."""

    def __init__(self, settings: Settings, keys: QueueKeys) -> None:
        self.settings = settings
        self.redis = connect(settings)
        self.replies = keys.replies(uuid.uuid4().hex)
        # Each blocking pop waits at most half the socket timeout, so Redis always
        # answers before the socket gives up on it.
        self._slice = settings.timeout / 2

    def block_for(self, deadline: float) -> float:
        """Seconds one blocking pop may wait to end by ``deadline``; at least 10 ms, since
        Redis reads a block time of 0 as "forever"."""
        return max(0.01, min(deadline - time.monotonic(), self._slice))

    def errors(self) -> AbstractContextManager[None]:
        """A lost Redis becomes BrokerUnavailable."""
        return redis_errors_as_unavailable(self.settings)

    def close(self) -> None:
        """Close the connection pool."""
        self.redis.close()


class _Requester:
    """Calls of a request/reply service (InsultService, echo) over a :class:`_Link`."""

    def __init__(self, settings: Settings, keys: QueueKeys) -> None:
        self.link = _Link(settings, keys)
        self._requests = keys.queue

    def call(self, op: str, args: list[Any]) -> Any:
        """Send one request and return its result; raises ServiceError or ServiceTimeout."""
        link = self.link
        request_id = uuid.uuid4().hex
        body = json.dumps({"id": request_id, "op": op, "args": args, "reply_to": link.replies})
        deadline = time.monotonic() + link.settings.timeout
        with link.errors():
            pipe = link.redis.pipeline(transaction=False)
            pipe.lpush(self._requests, body)
            pipe.blpop([link.replies], link.block_for(deadline))
            popped = pipe.execute()[1]
            while True:
                reply = _matching(popped, request_id)
                if reply is not None:
                    break
                if time.monotonic() >= deadline:
                    raise ServiceTimeout(f"no reply to {op} within {link.settings.timeout} s")
                popped = link.redis.blpop([link.replies], link.block_for(deadline))
        if reply.get("ok") is True:
            return reply.get("result")
        raise ServiceError(str(reply.get("error")))


def _matching(popped: tuple[bytes, bytes] | None, request_id: str) -> dict[str, Any] | None:
    """The reply if ``popped`` answers ``request_id``; late replies to calls that timed
    out earlier are dropped here."""
    if popped is None:
        return None
    try:
        reply = json.loads(popped[1])
    except ValueError:
        log.warning("dropped a reply that is not JSON: %r", popped[1][:200])
        return None
    if not isinstance(reply, dict) or reply.get("id") != request_id:
        return None
    return reply


class _Subscription(threading.Thread):
    """Runs ``callback`` for every insult published on a channel, on its own connection."""

    def __init__(
        self, client: redis.Redis, channel: str, callback: BroadcastCallback, timeout: float
    ) -> None:
        super().__init__(name=f"subscriber {channel}", daemon=True)
        self._callback = callback
        self._stopped = threading.Event()
        self._pubsub = client.pubsub()
        self._pubsub.subscribe(channel)
        # Wait for Redis to confirm, so nothing published after subscribe() returns is missed.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self._pubsub.get_message(timeout=deadline - time.monotonic())
            if message is not None and message["type"] == "subscribe":
                return
        self._pubsub.close()
        raise ServiceTimeout(f"Redis did not confirm the subscription to {channel}")

    def run(self) -> None:
        """Deliver messages until stopped; a failing callback or a lost connection is
        logged and the subscription goes on (redis-py re-subscribes on reconnect)."""
        while not self._stopped.is_set():
            try:
                message = self._pubsub.get_message(timeout=_SUBSCRIBER_POLL)
            except REDIS_DOWN as error:
                log.warning("subscription interrupted, retrying in 1 s: %s", error)
                self._stopped.wait(1.0)
                continue
            if message is None or message["type"] != "message":
                continue
            try:
                self._callback(message["data"].decode("utf-8", errors="replace"))
            except Exception:
                log.exception("broadcast callback failed")
        self._pubsub.close()

    def stop(self) -> None:
        """Stop delivering; waits for the thread unless called from the callback itself."""
        self._stopped.set()
        if threading.current_thread() is not self:
            self.join(timeout=2.0)


class RedisInsultClient(BrokerSubscriptionClient):
    """Client of the Redis InsultService."""

    def __init__(self, settings: Settings) -> None:
        keys = Keys(settings.namespace)
        self._requester = _Requester(settings, keys.insults)
        self._channel = keys.broadcast

    def add_insult(self, insult: str) -> bool:
        """Store an insult; True only when it was new."""
        return bool(self._requester.call("add_insult", [insult]))

    def get_insults(self) -> list[str]:
        """Every stored insult, sorted."""
        return list(self._requester.call("get_insults", []))

    def random_insult(self) -> str:
        """A random stored insult, or "" when there is none."""
        return str(self._requester.call("random_insult", []))

    def subscribe(self, callback: BroadcastCallback) -> None:
        """Receive broadcasts on a client thread; replaces an earlier subscription."""
        self.unsubscribe()
        link = self._requester.link
        with link.errors():
            subscription = _Subscription(link.redis, self._channel, callback, link.settings.timeout)
        subscription.start()
        self._subscription = subscription

    def _close_connection(self) -> None:
        self._requester.link.close()


class RedisFilterClient(FilterClient):
    """Client of the Redis InsultFilter: LPUSHes tasks, collects results on its reply list.

    Results arrive in completion order; those not asked for yet are kept until a
    :meth:`wait` or :meth:`result` asks for them. A task the worker refused is reported
    by raising :class:`ServiceError` when it is asked for.
    """

    def __init__(self, settings: Settings) -> None:
        keys = Keys(settings.namespace)
        self._link = _Link(settings, keys.filter)
        self._tasks = keys.filter.queue
        self._results = keys.results
        self._done: dict[str, str | ServiceError] = {}

    @property
    def default_timeout(self) -> float:
        """Seconds :meth:`filter` waits when no timeout is given."""
        return self._link.settings.timeout

    def submit(self, text: str) -> str:
        """Queue one text; returns its task id."""
        return self.submit_many([text])[0]

    def submit_many(self, texts: Sequence[str]) -> list[str]:
        """Queue texts in one round trip (one LPUSH per thousand); returns their ids."""
        ids = [uuid.uuid4().hex for _ in texts]
        bodies = [self._task(task_id, text) for task_id, text in zip(ids, texts, strict=True)]
        if not bodies:
            return ids
        pipe = self._link.redis.pipeline(transaction=False)
        for start in range(0, len(bodies), _PUSH_CHUNK):
            pipe.lpush(self._tasks, *bodies[start : start + _PUSH_CHUNK])
        with self._link.errors():
            pipe.execute()
        return ids

    def wait(self, task_ids: Sequence[str], timeout: float) -> dict[str, str]:
        """Results of ``task_ids`` done so far, waiting up to ``timeout`` for the first."""
        deadline = time.monotonic() + timeout
        found = self._take(task_ids)
        if found:
            return found
        with self._link.errors():
            if timeout <= 0:
                self._receive(self._link.redis.pipeline(transaction=False), block=None)
                return self._take(task_ids)
            while not found and time.monotonic() < deadline:
                pipe = self._link.redis.pipeline(transaction=False)
                self._receive(pipe, block=self._link.block_for(deadline))
                found = self._take(task_ids)
        return found

    def filter(self, text: str, timeout: float | None = None) -> str:
        """Submit and wait in the same round trip; then as :meth:`FilterClient.filter`."""
        deadline = time.monotonic() + (self.default_timeout if timeout is None else timeout)
        task_id = uuid.uuid4().hex
        with self._link.errors():
            pipe = self._link.redis.pipeline(transaction=False)
            pipe.lpush(self._tasks, self._task(task_id, text))
            self._receive(pipe, block=self._link.block_for(deadline))
        done = self._take([task_id])
        while task_id not in done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceTimeout(f"task {task_id} got no result in time")
            # wait hands the result out (once): it must not be thrown away here.
            done = self.wait([task_id], remaining)
        return done[task_id]

    def get_results(self, limit: int = 100) -> list[str]:
        """Up to ``limit`` censored texts from ``<ns>:filter:results``, newest first."""
        try:
            validate_limit(limit, self._link.settings.result_limit)
        except InsultError as error:
            raise ServiceError(str(error)) from None
        if limit == 0:
            return []
        with self._link.errors():
            entries = self._link.redis.lrange(self._results, 0, limit - 1)
        return [json.loads(entry)["text"] for entry in entries]

    def close(self) -> None:
        """Close the connection; results not collected yet stay on the reply list until
        it expires."""
        self._link.close()

    def _task(self, task_id: str, text: str) -> str:
        return json.dumps({"id": task_id, "text": text, "reply_to": self._link.replies})

    def _receive(self, pipe: redis.client.Pipeline, block: float | None) -> None:
        """Run ``pipe`` with a wait for results appended (no wait when ``block`` is None),
        and keep every result it brings."""
        if block is not None:
            pipe.blpop([self._link.replies], block)
        pipe.lpop(self._link.replies, _DRAIN)
        results = pipe.execute()
        popped: list[bytes] = list(results[-1] or [])
        if block is not None and results[-2] is not None:
            popped.insert(0, results[-2][1])
        for raw in popped:
            self._keep(raw)

    def _keep(self, raw: bytes) -> None:
        try:
            result = json.loads(raw)
            task_id = result["id"]
            if result.get("ok") is False:
                self._done[task_id] = ServiceError(str(result.get("error")))
            else:
                self._done[task_id] = result["text"]
        except (ValueError, KeyError, TypeError):
            log.warning("dropped a malformed result: %r", raw[:200])

    def _take(self, task_ids: Sequence[str]) -> dict[str, str]:
        """Hand out the kept results of ``task_ids``, once each; raise for a refused one
        (the others stay kept for the next call)."""
        found: dict[str, str] = {}
        for task_id in task_ids:
            outcome = self._done.pop(task_id, None)
            if isinstance(outcome, ServiceError):
                self._done.update(found)
                raise outcome
            if outcome is not None:
                found[task_id] = outcome
        return found


class RedisEchoClient(EchoClient):
    """Client of the Redis echo baseline: the same round trip as an InsultService call."""

    def __init__(self, settings: Settings) -> None:
        self._requester = _Requester(settings, Keys(settings.namespace).echo)

    def echo(self, payload: str) -> str:
        """Send ``payload`` and return what came back."""
        return self._requester.call("echo", [payload])

    def close(self) -> None:
        """Close the connection."""
        self._requester.link.close()
