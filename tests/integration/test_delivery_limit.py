"""Every queue has a delivery limit: a message that keeps killing its consumer is set aside.

No message should crash a consumer any more (tests/integration/test_poison.py); this is the defence
in depth for what still can: a SIGKILL, the OOM killer, a hang. A message whose consumer
died holding it ``delivery_limit`` times (3 by default) goes to the queue's dead-letter
list (Redis, ``<ns>:<service>:dead``) or queue (RabbitMQ, ``<queue>.dead``) instead of
being handed out again; the messages that were held together with it are not punished
with it; the count is in ``Backend.dead_letters``, the stress results and
``python -m middlewares check``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pika
import pytest
import redis

from middlewares.cluster.keys import Keys
from middlewares.launch.deployment import Deployment
from middlewares.redis.answers import Answers
from middlewares.redis.transport import Ack, ReliableConsumer
from middlewares.registry import get_backend
from middlewares.settings import Settings
from tests.helpers import require, wait_for


@pytest.fixture
def redis_settings(settings: Settings) -> Iterator[Settings]:
    backend = get_backend("redis")
    require(backend, settings)
    yield settings
    backend.cleanup(settings)


def test_redis_sets_a_crash_looping_message_aside_and_spares_those_claimed_with_it(
    redis_settings: Settings,
):
    """A consumer restarted under the same id (as the launcher restarts one) re-queues
    what its earlier life held; the third time a message comes back that way, it is
    dead-lettered. The two messages claimed with it come back once, are then claimed one
    at a time, acknowledged, and forgotten."""
    settings = redis_settings
    keys = Keys(settings.namespace).filter
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10)

    def life() -> ReliableConsumer:
        answers = Answers(keys.processing("crashing"), keys, "crashing", reply_ttl=60)
        consumer = ReliableConsumer(client, answers, settings)
        consumer.start()
        return consumer

    poison, first, second = b'{"id": "poison"}', b'{"id": "a"}', b'{"id": "b"}'
    client.lpush(keys.queue, poison, first, second)
    consumer = life()
    assert consumer.exchange([]) == [poison, first, second]
    claims = []
    for _ in range(settings.delivery_limit):  # each life dies holding what it claimed
        consumer = life()
        claims.append(consumer.exchange([]))
    assert claims == [[poison], [poison], [first]]
    assert client.lrange(keys.dead, 0, -1) == [poison]
    assert consumer.exchange([Ack(first)]) == [second]
    consumer.finish([Ack(second)])
    assert client.exists(keys.redeliveries, keys.queue, keys.processing("crashing")) == 0
    assert get_backend("redis").dead_letters(settings)[keys.dead] == 1
    check = subprocess.run(
        [sys.executable, "-m", "middlewares", "check"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "INSULTBENCH_NAMESPACE": settings.namespace},
    )
    assert f"{keys.dead} holds 1" in check.stdout, check.stdout
    client.close()


def _kill(deployment: Deployment) -> int:
    """SIGKILL the deployment's one worker; returns its pid."""
    (pid,) = deployment.worker_pids()
    os.kill(pid, signal.SIGKILL)
    return pid


def _restarted(deployment: Deployment, old: int) -> bool:
    pids = deployment.worker_pids()
    return len(pids) == 1 and pids[0] != old


@pytest.mark.slow
def test_a_redis_task_whose_worker_is_killed_three_times_is_dead_lettered(
    redis_settings: Settings,
):
    # Long enough to be killed in the middle of it; short enough that the readiness
    # probes (2 s each) do not pile up behind one another.
    settings = redis_settings.with_changes(work_ms=1000.0)
    ns = settings.namespace
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
    with Deployment("redis", "filter", settings) as deployment:
        replies = f"{ns}:filter:replies:{uuid.uuid4().hex}"
        task = json.dumps({"id": "killer", "text": "tonto", "reply_to": replies}).encode()

        def held_after(returns: int) -> bool:
            """The worker holds the task, which came back ``returns`` times so far (a
            restarted worker re-queues what its earlier life held, then claims it)."""
            counted = client.hget(f"{ns}:filter:redeliveries", hashlib.sha1(task).hexdigest())
            return int(counted or 0) == returns and any(
                task in client.lrange(key, 0, -1)
                for key in client.scan_iter(f"{ns}:filter:processing:*")
            )

        client.lpush(f"{ns}:filter:tasks", task)
        for returns in range(settings.delivery_limit):
            assert wait_for(lambda r=returns: held_after(r), 15), deployment.log_tail()
            old = _kill(deployment)
            assert wait_for(lambda old=old: _restarted(deployment, old), 15)
        assert wait_for(lambda: client.llen(f"{ns}:filter:dead") == 1, 15), deployment.log_tail()
        assert client.lrange(f"{ns}:filter:dead", 0, -1) == [task]
        with get_backend("redis").filter_client(settings) as texts:
            assert texts.filter("eres feo", timeout=10) == "eres CENSORED"
        assert client.llen(replies) == 0
        assert deployment.log_tail(100_000).count("; restarting it") == settings.delivery_limit
    client.close()


@pytest.mark.slow
def test_a_rabbitmq_task_whose_worker_is_killed_three_times_is_dead_lettered_alone(
    settings: Settings,
):
    """Three tasks are delivered together; the worker is killed while it works on the
    first, then twice more while it works on that one again (the retry queue hands
    returned tasks out one at a time). The first is set aside and its submitter told;
    the other two are answered exactly once."""
    backend = get_backend("rabbitmq")
    require(backend, settings)
    settings = settings.with_changes(work_ms=1500.0)
    ns = settings.namespace
    tasks, retry = f"{ns}.filter.tasks", f"{ns}.filter.tasks.retry"
    try:
        with Deployment("rabbitmq", "filter", settings) as deployment:
            connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
            channel = connection.channel()
            replies = channel.queue_declare("", exclusive=True).method.queue
            answers: list[tuple[str, dict]] = []
            channel.basic_consume(
                replies,
                lambda ch, m, p, body: answers.append((p.correlation_id, json.loads(body))),
                auto_ack=True,
            )

            def ready(queue: str) -> int:
                return channel.queue_declare(queue, passive=True).method.message_count

            def answered() -> int:
                connection.process_data_events(time_limit=0)
                return len(answers)

            def until(condition, timeout: float = 20) -> bool:
                return wait_for(condition, timeout, interval=0.05)

            for task_id in ("killer", "spared-1", "spared-2"):
                properties = pika.BasicProperties(
                    reply_to=replies, correlation_id=task_id, delivery_mode=2
                )
                channel.basic_publish("", tasks, b'{"text": "eres tonto"}', properties)
            assert until(lambda: ready(tasks) == 0)  # all three delivered to the worker
            old = _kill(deployment)
            assert until(lambda: _restarted(deployment, old))
            # Returned to the retry queue in order; the worker works on the first alone.
            assert until(lambda: ready(tasks) == 0 and ready(retry) == 2)
            old = _kill(deployment)
            assert until(lambda: _restarted(deployment, old))
            assert until(lambda: answered() == 2 and ready(retry) == 0, 30)
            old = _kill(deployment)
            assert until(lambda: answered() == 3, 30)
            connection.close()
        outcome = dict(answers)
        assert len(answers) == 3 and set(outcome) == {"killer", "spared-1", "spared-2"}
        assert outcome["spared-1"] == outcome["spared-2"] == {"text": "eres CENSORED"}
        assert outcome["killer"]["ok"] is False
        assert f"{tasks}.dead" in outcome["killer"]["error"]
        assert backend.dead_letters(settings) == {
            f"{ns}.insults.requests.dead": 0,
            f"{tasks}.dead": 1,
            f"{ns}.echo.requests.dead": 0,
        }
    finally:
        backend.cleanup(settings)
