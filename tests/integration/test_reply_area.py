"""A hostile reply address writes nothing and expires nothing outside the reply area.

Redis services answer only on keys ``<ns>:<insults|filter|echo>:replies:<id>``; a request
naming any other key (the insult store, a queue, a key of another application) is
dropped, and an expiry is set only on a reply list the answer was pushed on. RabbitMQ
services answer through the default exchange only, so a ``reply_to`` naming an exchange
reaches no one. Both are checked as an attacker would try them, against the real
brokers, with a snapshot of every key (values and TTLs) before and after.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pika
import pytest
import redis

from middlewares.launch.deployment import Deployment
from middlewares.registry import get_backend
from middlewares.settings import Settings
from tests.helpers import require

#: Bookkeeping keys that change by themselves while services run (heartbeats, counters,
#: the broadcaster lease, processing lists), left out of the snapshots.
_VOLATILE = (":heartbeat:", ":stats:", ":consumers", ":processing:", ":insults:broadcaster")


@pytest.fixture(scope="module")
def redis_services() -> Iterator[Settings]:
    """The InsultService, a filter worker and the echo on Redis, in one namespace."""
    settings = Settings.from_env().with_changes(
        namespace=f"ibtest-reply-{uuid.uuid4().hex[:8]}", timeout=5.0, broadcast_interval=60.0
    )
    backend = get_backend("redis")
    require(backend, settings)
    deployments = [
        Deployment("redis", service, settings) for service in ("insult", "filter", "echo")
    ]
    try:
        for deployment in deployments:
            deployment.start()
        yield settings
    finally:
        for deployment in deployments:
            deployment.stop()
        backend.cleanup(settings)


@pytest.fixture
def db(redis_services: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_services.redis_url, socket_timeout=10)
    yield client
    client.close()


def snapshot(client: redis.Redis, keys: list[bytes]) -> dict[bytes, tuple[object, ...]]:
    """Type, value and remaining TTL (ms; -1: none) of each key."""
    readers = {
        b"string": client.get,
        b"list": lambda key: client.lrange(key, 0, -1),
        b"set": lambda key: sorted(client.smembers(key)),
        b"hash": lambda key: sorted(client.hgetall(key).items()),
    }
    found = {}
    for key in keys:
        kind = client.type(key)
        if kind != b"none":
            found[key] = (kind, readers[kind](key), client.pttl(key))
    return found


def namespace_keys(client: redis.Redis, settings: Settings) -> list[bytes]:
    """Every key of the namespace but the volatile ones and those of the reply area."""
    return [
        key
        for key in client.scan_iter(match=f"{settings.namespace}:*", count=1000)
        if not any(part.encode() in key for part in (*_VOLATILE, ":replies:"))
    ]


SERVICES = {
    "insult": ("insults", {"op": "random_insult", "args": []}),
    "filter": ("filter", {"text": "eres tonto"}),
    "echo": ("echo", {"op": "echo", "args": ["x"]}),
}


@pytest.mark.parametrize("service", list(SERVICES))
def test_a_hostile_reply_to_changes_no_key_outside_the_reply_area(
    redis_services: Settings, db: redis.Redis, service: str
):
    settings, ns = redis_services, redis_services.namespace
    prefix, request = SERVICES[service]
    queue = f"{ns}:{prefix}:{'tasks' if service == 'filter' else 'requests'}"
    area = f"{ns}:{prefix}:replies:"
    bystanders = [f"ibtest-bystander-{uuid.uuid4().hex}", f"ibtest-bystander-{uuid.uuid4().hex}"]
    db.rpush(bystanders[0], "another application's list")
    db.rpush(bystanders[1], "a list with a TTL")
    db.expire(bystanders[1], 600)
    taken = f"{area}someone-else"
    db.set(taken, "a string in the reply area")
    db.set(f"{ns}:a-string", "keep me")
    hostile = [
        f"{ns}:insults:store",
        f"{ns}:filter:results",
        f"{ns}:{prefix}:dead",
        queue,
        f"{ns}:a-string",
        f"{ns}:{prefix}:replies",
        area,
        f"{ns}:other:replies:x",
        f"{ns}x:{prefix}:replies:x",
        *bystanders,
        7,
        ["a", "list"],
    ]
    try:
        outside = [*namespace_keys(db, settings), *(name.encode() for name in bystanders)]
        watched = [*outside, taken.encode()]
        before = snapshot(db, watched)
        started = time.monotonic()
        for n, reply_to in enumerate(hostile):
            db.lpush(queue, json.dumps({**request, "id": f"hostile-{n}", "reply_to": reply_to}))
        # A key of the reply area that is not a list: the answer fails, and no expiry is
        # set. (A refused text, for the filter: a good one would reach the result list.)
        refused = {"text": 7} if service == "filter" else {}
        db.lpush(queue, json.dumps({**request, **refused, "id": "taken", "reply_to": taken}))
        # A good request after them (one consumer, first in first out) proves they were
        # handled; for the filter a refused text, whose answer goes only to its reply list.
        good = f"{area}{uuid.uuid4().hex}"
        sentinel = {**request, "id": "good", "reply_to": good}
        if service == "filter":
            sentinel["text"] = 7
        db.lpush(queue, json.dumps(sentinel))
        assert db.blpop([good], timeout=5) is not None, "the request after them got no answer"
        after = snapshot(db, watched)
        elapsed_ms = (time.monotonic() - started) * 1000
        assert set(after) == set(before)
        for key, (kind, value, ttl) in before.items():
            assert after[key][:2] == (kind, value), key
            if ttl < 0:
                assert after[key][2] == ttl, f"{key!r} got an expiry"
            else:
                assert ttl - elapsed_ms - 2000 <= after[key][2] <= ttl, f"{key!r} expiry changed"
        new_keys = set(namespace_keys(db, settings)) - set(before)
        assert new_keys == set(), new_keys
    finally:
        db.delete(*bystanders)


# -- RabbitMQ ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "queue", "exchange", "body"),
    [
        ("insult", "insults.requests", "insults.broadcast", b'{"op": "get_insults"}'),
        ("filter", "filter.tasks", "filter.stats", b'{"text": "eres tonto"}'),
    ],
)
def test_rabbitmq_replies_reach_only_the_queue_reply_to_names(
    settings: Settings, service: str, queue: str, exchange: str, body: bytes
):
    """A reply_to naming an exchange reaches nobody bound to it: replies are published
    to the default exchange, whose routing key is a queue name."""
    backend = get_backend("rabbitmq")
    require(backend, settings)
    ns = settings.namespace
    with Deployment("rabbitmq", service, settings.with_changes(broadcast_interval=60.0)):
        connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
        try:
            channel = connection.channel()
            channel.exchange_declare(f"{ns}.{exchange}", exchange_type="fanout")
            listener = channel.queue_declare("", exclusive=True).method.queue
            channel.queue_bind(listener, f"{ns}.{exchange}")
            mine = channel.queue_declare("", exclusive=True).method.queue
            for reply_to, correlation_id in ((f"{ns}.{exchange}", "hostile"), (mine, "mine")):
                properties = pika.BasicProperties(reply_to=reply_to, correlation_id=correlation_id)
                channel.basic_publish("", f"{ns}.{queue}", body, properties)
            replies = []
            deadline = time.monotonic() + 5
            while not replies and time.monotonic() < deadline:
                method, properties, answer = channel.basic_get(mine, auto_ack=True)
                if method is not None:
                    replies.append((properties.correlation_id, json.loads(answer)))
                else:
                    connection.process_data_events(time_limit=0.05)
            assert [correlation for correlation, _ in replies] == ["mine"]
            heard = []
            while (got := channel.basic_get(listener, auto_ack=True))[0] is not None:
                heard.append(got[2])
            assert not any(b'"ok"' in message or b'"text"' in message for message in heard), heard
        finally:
            connection.close()
    backend.cleanup(settings)
