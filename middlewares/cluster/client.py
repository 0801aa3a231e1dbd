"""The one way insultbench opens a Redis connection, for every process and harness."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from middlewares.contract import BrokerUnavailable
from middlewares.hints import start_hint
from middlewares.settings import Settings

#: The errors that mean "Redis is not there", as opposed to a refused command.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


def unavailable(settings: Settings, hint: str | None = None) -> BrokerUnavailable:
    """The error for a Redis that cannot be reached (or used) at ``settings.redis_url``;
    the hint says how to start one on this machine unless given."""
    return BrokerUnavailable(settings.redis_url, hint or start_hint("redis"))


def connect(settings: Settings, timeout: float | None = None) -> redis.Redis:
    """A client with a connection pool of its own, proven by a PING.

    Every socket operation times out after ``timeout`` (default ``settings.timeout``), and
    nothing is retried behind the caller's back: redis-py's default retries would send a
    timed-out LPUSH twice. Raises :class:`BrokerUnavailable` naming the URL and the fix.
    """
    seconds = settings.timeout if timeout is None else timeout
    try:
        client = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=seconds,
            socket_connect_timeout=min(seconds, 3.0),
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as error:
        raise unavailable(settings, f"not a Redis URL ({error})") from None
    try:
        client.ping()
    except REDIS_DOWN as error:
        client.close()
        raise unavailable(settings, f"{start_hint('redis')} ({error})") from None
    return client


@contextmanager
def redis_errors_as_unavailable(settings: Settings) -> Iterator[None]:
    """Turn a lost Redis into :class:`BrokerUnavailable`: one line, no traceback."""
    try:
        yield
    except REDIS_DOWN as error:
        raise unavailable(settings, f"{start_hint('redis')} ({error})") from None
