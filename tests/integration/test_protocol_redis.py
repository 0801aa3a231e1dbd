"""The Redis wire protocol, spoken with plain redis-py as a client in any language would.

These tests use only what ``docs/PROTOCOL.md (Redis)`` documents: key names, JSON messages
and Redis commands, never the project's client classes.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import redis

from middlewares.core import load_default_insults
from middlewares.registry import get_backend
from middlewares.settings import Settings
from tests.helpers import Deploy, SharedDeployments, protocol_section, require, wait_for


@pytest.fixture
def middleware(settings: Settings) -> Iterator[str]:
    """Only Redis here; the namespace is cleaned up after each test."""
    backend = get_backend("redis")
    require(backend, settings)
    yield "redis"
    backend.cleanup(settings)


@pytest.fixture
def raw(settings: Settings) -> Iterator[redis.Redis]:
    """A plain Redis connection that decodes replies to str."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10, decode_responses=True)
    yield client
    client.close()


def reply_list(settings: Settings, service: str = "insults") -> str:
    return f"{settings.namespace}:{service}:replies:{uuid.uuid4().hex}"


def request(
    raw: redis.Redis, settings: Settings, op: object, args: object, service: str = "insults"
) -> dict[str, Any]:
    """One request/reply round trip on the service's request list."""
    replies = reply_list(settings, service)
    request_id = uuid.uuid4().hex
    message = {"id": request_id, "op": op, "args": args, "reply_to": replies}
    raw.lpush(f"{settings.namespace}:{service}:requests", json.dumps(message))
    popped = raw.blpop([replies], timeout=5)
    assert popped is not None, "no reply within 5 s"
    reply = json.loads(popped[1])
    assert reply["id"] == request_id
    return reply


def filter_task(raw: redis.Redis, settings: Settings, task: dict[str, Any]) -> dict[str, Any]:
    """Submit one filter task with a reply list and wait for its answer."""
    replies = reply_list(settings, "filter")
    raw.lpush(f"{settings.namespace}:filter:tasks", json.dumps({**task, "reply_to": replies}))
    popped = raw.blpop([replies], timeout=5)
    assert popped is not None, "no answer within 5 s"
    return json.loads(popped[1])


def nothing_left_queued(raw: redis.Redis, settings: Settings, service: str, queue: str) -> bool:
    """True when the queue and every processing list of the service are empty."""
    ns = settings.namespace
    processing = list(raw.scan_iter(match=f"{ns}:{service}:processing:*"))
    return raw.llen(f"{ns}:{service}:{queue}") == 0 and all(raw.llen(k) == 0 for k in processing)


def ten_line_client() -> str:
    """The Python example of the Redis section of docs/PROTOCOL.md, as printed there."""
    doc = protocol_section("Redis")
    section = doc.split("### Ten-line client", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_ten_line_script_adds_an_insult_and_gets_a_censored_text(
    deploy: Deploy,
    settings: Settings,
    raw: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    deploy("insult")
    deploy("filter")
    script = ten_line_client()
    assert len(script.splitlines()) <= 10
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("INSULTBENCH_NAMESPACE", settings.namespace)
    exec(compile(script, "PROTOCOL.md", "exec"), {})
    added, censored = capsys.readouterr().out.splitlines()
    assert '"ok": true, "result": true' in added
    assert '"text": "Eres un CENSORED."' in censored
    assert raw.sismember(f"{settings.namespace}:insults:store", "zascandil")


def test_insult_requests_are_answered_with_results(
    deploy: Deploy, settings: Settings, raw: redis.Redis
):
    deploy("insult", load_defaults=False)
    assert request(raw, settings, "random_insult", [])["result"] == ""
    assert request(raw, settings, "get_insults", [])["result"] == []
    assert request(raw, settings, "add_insult", ["  Cenutrio "])["result"] is True
    assert request(raw, settings, "add_insult", ["CENUTRIO"])["result"] is False
    assert request(raw, settings, "add_insult", ["ñoño 🙂"])["result"] is True
    assert request(raw, settings, "get_insults", [])["result"] == ["cenutrio", "ñoño 🙂"]
    assert request(raw, settings, "random_insult", [])["result"] in {"cenutrio", "ñoño 🙂"}
    assert raw.smembers(f"{settings.namespace}:insults:store") == {"cenutrio", "ñoño 🙂"}


BAD_REQUESTS = [
    ("launch_missiles", [], "unknown op"),
    (None, [], "unknown op"),
    ("add_insult", "tonto", "args must be a JSON array"),
    ("add_insult", [], "takes 1 argument"),
    ("get_insults", ["extra"], "takes 0 argument"),
    ("add_insult", [42], "insult must be a string"),
    ("add_insult", [""], "insult is empty"),
    ("add_insult", ["x" * 65], "over the limit"),
]


@pytest.mark.parametrize(("op", "args", "message"), BAD_REQUESTS, ids=lambda v: repr(v)[:20])
def test_bad_requests_get_an_error_answer(
    insult_settings: Settings, raw: redis.Redis, op, args, message
):
    settings = insult_settings
    reply = request(raw, settings, op, args)
    assert reply["ok"] is False
    assert message in reply["error"]
    after = f"still serving {uuid.uuid4().hex[:8]}"
    assert request(raw, settings, "add_insult", [after])["result"] is True


UNANSWERABLE = [
    b"this is not JSON",
    b"\xff\xfe not UTF-8",
    b'["a", "list"]',
    b'{"id": "1", "op": "get_insults", "args": []}',
    b'{"id": "1", "op": "get_insults", "args": [], "reply_to": 7}',
    b'{"id": "1", "op": "get_insults", "args": [], "reply_to": ""}',
]


@pytest.mark.parametrize("service", ["insults", "echo"])
def test_unanswerable_requests_are_dropped_without_stalling(
    shared_deploy: SharedDeployments, raw: redis.Redis, service: str
):
    settings = shared_deploy("redis", "insult" if service == "insults" else "echo").settings
    raw.lpush(f"{settings.namespace}:{service}:requests", *UNANSWERABLE)
    op = "random_insult" if service == "insults" else "echo"
    assert request(raw, settings, op, ["x"] if service == "echo" else [], service)["ok"]
    assert nothing_left_queued(raw, settings, service, "requests")


def test_a_reply_to_naming_another_kind_of_key_does_not_stop_the_service(
    insult_settings: Settings, raw: redis.Redis
):
    settings = insult_settings
    not_a_list = f"{settings.namespace}:a-string"
    raw.set(not_a_list, "keep me")
    message = {"id": "1", "op": "add_insult", "args": ["bad reply_to"], "reply_to": not_a_list}
    raw.lpush(f"{settings.namespace}:insults:requests", json.dumps(message))
    assert request(raw, settings, "add_insult", [f"next {uuid.uuid4().hex[:8]}"])["result"] is True
    assert raw.get(not_a_list) == "keep me"


def test_reply_lists_expire(deploy: Deploy, settings: Settings, raw: redis.Redis):
    deploy("insult")
    replies = reply_list(settings)
    message = {"id": "1", "op": "random_insult", "args": [], "reply_to": replies}
    raw.lpush(f"{settings.namespace}:insults:requests", json.dumps(message))
    deadline = time.monotonic() + 5
    while raw.llen(replies) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert 0 < raw.ttl(replies) <= 3600


def test_echo_returns_the_payload(deploy: Deploy, settings: Settings, raw: redis.Redis):
    deploy("echo")
    assert request(raw, settings, "echo", ["¿eco? 🙂"], "echo")["result"] == "¿eco? 🙂"


def test_a_plain_subscriber_receives_broadcasts(
    deploy: Deploy, settings: Settings, raw: redis.Redis
):
    deploy("insult", broadcast_interval=0.3)
    pubsub = raw.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{settings.namespace}:insults:broadcast")
    received: list[str] = []
    deadline = time.monotonic() + 5
    while len(received) < 3 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message is not None:
            received.append(message["data"])
    pubsub.close()
    assert len(received) == 3
    assert set(received) <= set(load_default_insults())


BAD_TASKS = [
    ({"id": "t1", "text": ""}, "text is empty"),
    ({"id": "t2", "text": 7}, "text must be a string"),
    ({"id": "t3"}, "text must be a string"),
    ({"id": "t4", "text": "x" * 2049}, "over the limit of 2048"),
    ({"id": 5, "text": "tonto"}, "task id must be a non-empty string"),
]


def test_bad_tasks_get_an_error_answer_once(deploy: Deploy, settings: Settings, raw: redis.Redis):
    deploy("filter", max_text_bytes=2048)
    for task, message in BAD_TASKS:
        answer = filter_task(raw, settings, task)
        assert answer["ok"] is False
        assert answer["id"] == task["id"]
        assert message in answer["error"]
    assert filter_task(raw, settings, {"id": "ok", "text": "tonto"})["text"] == "CENSORED"
    assert nothing_left_queued(raw, settings, "filter", "tasks"), "a bad task was retried"
    results = [
        json.loads(entry) for entry in raw.lrange(f"{settings.namespace}:filter:results", 0, -1)
    ]
    # Refused tasks are answered, never logged as results (only the readiness probe is).
    assert results[0] == {"id": "ok", "ok": True, "text": "CENSORED"}
    assert all(entry["ok"] for entry in results)


def test_unanswerable_tasks_are_dropped_and_the_rest_is_served(
    deploy: Deploy, settings: Settings, raw: redis.Redis
):
    deploy("filter")
    unanswerable = [
        b"not JSON",
        b"[1, 2]",
        b'{"id": "a", "text": 7}',
        b'{"id": "b", "text": "tonto", "reply_to": 7}',
    ]
    raw.lpush(f"{settings.namespace}:filter:tasks", *unanswerable)
    assert filter_task(raw, settings, {"id": "c", "text": "feo"})["text"] == "CENSORED"
    assert nothing_left_queued(raw, settings, "filter", "tasks")


def test_tasks_without_reply_to_end_in_the_bounded_result_list(
    deploy: Deploy, settings: Settings, raw: redis.Redis
):
    deploy("filter", result_limit=3)
    tasks = [json.dumps({"id": f"n{n}", "text": f"{n} bobo"}) for n in range(5)]
    raw.lpush(f"{settings.namespace}:filter:tasks", *tasks)
    results_key = f"{settings.namespace}:filter:results"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not nothing_left_queued(raw, settings, "filter", "tasks"):
        time.sleep(0.05)
    entries = [json.loads(entry) for entry in raw.lrange(results_key, 0, -1)]
    assert entries == [{"id": f"n{n}", "ok": True, "text": f"{n} CENSORED"} for n in (4, 3, 2)]


@pytest.mark.parametrize("service", ["filter", "insults"])
def test_messages_held_by_a_dead_consumer_are_requeued_and_answered_once(
    deploy: Deploy, settings: Settings, raw: redis.Redis, service: str
):
    deploy("filter" if service == "filter" else "insult", load_defaults=False)
    ns = settings.namespace
    replies = reply_list(settings, service)
    if service == "filter":
        held = [{"id": f"h{n}", "text": f"held {n} tonto", "reply_to": replies} for n in range(3)]
    else:
        held = [
            {"id": f"h{n}", "op": "add_insult", "args": ["fantasma"], "reply_to": replies}
            for n in range(3)
        ]
    stats = f"{ns}:stats:{'filter' if service == 'filter' else 'insult'}"
    served_before = sum(int(count) for count in raw.hgetall(stats).values())
    # A consumer that claimed these, then died: registered, no heartbeat key.
    raw.lpush(f"{ns}:{service}:processing:ghost", *[json.dumps(m) for m in held])
    raw.sadd(f"{ns}:{service}:consumers", "ghost")
    answers = []
    deadline = time.monotonic() + 15
    while len(answers) < 3 and time.monotonic() < deadline:
        popped = raw.blpop([replies], timeout=1)
        if popped is not None:
            answers.append(json.loads(popped[1]))
    assert sorted(a["id"] for a in answers) == ["h0", "h1", "h2"]
    if service == "filter":
        assert {a["text"] for a in answers} == {f"held {n} CENSORED" for n in range(3)}
    else:
        assert sorted(a["result"] for a in answers) == [False, False, True]
    assert not raw.sismember(f"{ns}:{service}:consumers", "ghost")
    assert raw.llen(f"{ns}:{service}:processing:ghost") == 0
    # Counted once, for the node that answered them, none for the one that died.
    assert raw.hget(stats, "ghost") is None
    assert sum(int(count) for count in raw.hgetall(stats).values()) == served_before + 3


def test_messages_of_a_live_consumer_are_left_alone(
    deploy: Deploy, settings: Settings, raw: redis.Redis
):
    deploy("filter")
    ns = settings.namespace
    raw.lpush(f"{ns}:filter:processing:busy", json.dumps({"id": "b", "text": "tonto"}))
    raw.sadd(f"{ns}:filter:consumers", "busy")
    raw.set(f"{ns}:filter:heartbeat:busy", "alive", ex=30)
    # A dead consumer registered after it: once a sweep has re-queued the dead one's
    # message, that sweep has seen the live one too (no fixed wait for a sweep).
    raw.lpush(f"{ns}:filter:processing:ghost", json.dumps({"id": "g", "text": "tonto"}))
    raw.sadd(f"{ns}:filter:consumers", "ghost")
    assert wait_for(lambda: not raw.sismember(f"{ns}:filter:consumers", "ghost"), 15)
    assert raw.llen(f"{ns}:filter:processing:busy") == 1
    assert raw.sismember(f"{ns}:filter:consumers", "busy")


def test_cleanup_deletes_the_namespace_and_nothing_else(
    middleware: str, settings: Settings, raw: redis.Redis
):
    # Glob characters in the namespace must match only themselves.
    odd = settings.with_changes(namespace=settings.namespace + "[*]")
    ours = [f"{odd.namespace}:insults:store", f"{odd.namespace}:filter:results"]
    neighbours = [f"{settings.namespace}*:key", f"{settings.namespace}[*]x:key"]
    for key in ours + neighbours:
        raw.set(key, "value", ex=60)
    try:
        get_backend("redis").cleanup(odd)
        assert raw.exists(*ours) == 0
        assert raw.exists(*neighbours) == len(neighbours)
    finally:
        raw.delete(*neighbours)


@pytest.mark.slow
def test_a_sigkilled_insult_service_answers_every_request_exactly_once(
    deploy: Deploy, settings: Settings, raw: redis.Redis
):
    deployment = deploy("insult", load_defaults=False)
    queue = f"{settings.namespace}:insults:requests"
    replies = reply_list(settings)
    total = 3000
    requests = [
        json.dumps({"id": n, "op": "add_insult", "args": [f"insult {n}"], "reply_to": replies})
        for n in range(total)
    ]
    raw.lpush(queue, *requests[: total // 2])
    deadline = time.monotonic() + 10
    while raw.llen(queue) > total // 2 - 100 and time.monotonic() < deadline:
        time.sleep(0.005)
    (service,) = deployment.worker_pids()
    os.kill(service, signal.SIGKILL)  # mid-stream; the launcher restarts it
    raw.lpush(queue, *requests[total // 2 :])
    answers: dict[int, bool] = {}
    deadline = time.monotonic() + 60
    while len(answers) < total and time.monotonic() < deadline:
        popped = raw.blpop([replies], timeout=1)
        if popped is not None:
            reply = json.loads(popped[1])
            assert reply["id"] not in answers, f"request {reply['id']} was answered twice"
            answers[reply["id"]] = reply["result"]
    assert len(answers) == total, f"{total - len(answers)} requests went unanswered"
    # Each add took effect exactly once, together with its answer.
    assert all(answers.values())
    assert raw.scard(f"{settings.namespace}:insults:store") == total


def node_id_of(pid: int) -> str:
    """The ``--node-id`` a service process was started with."""
    cmdline = psutil.Process(pid).cmdline()
    return cmdline[cmdline.index("--node-id") + 1]


def collect(raw: redis.Redis, replies: str, count: int) -> list[dict[str, Any]]:
    """Pop ``count`` answers from a reply list, waiting up to 30 s in all."""
    answers: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while len(answers) < count and time.monotonic() < deadline:
        popped = raw.blpop([replies], timeout=1)
        if popped is not None:
            answers.append(json.loads(popped[1]))
    return answers


@pytest.mark.slow
def test_node_counters_are_exact_and_survive_a_restart(
    deploy: Deploy, settings: Settings, raw: redis.Redis
):
    deployment = deploy("filter")
    (pid,) = deployment.node_pids()
    node = node_id_of(pid)
    stats = f"{settings.namespace}:stats:filter"
    replies = reply_list(settings, "filter")
    tasks = [json.dumps({"id": f"t{n}", "text": "tonto", "reply_to": replies}) for n in range(100)]
    before = int(raw.hget(stats, node) or 0)
    raw.lpush(f"{settings.namespace}:filter:tasks", *tasks[:50])
    assert len(collect(raw, replies, 50)) == 50
    # Counted in the step that answers, so exact as soon as the answers are there.
    assert int(raw.hget(stats, node)) == before + 50
    os.kill(pid, signal.SIGKILL)  # the launcher restarts it with the same id
    raw.lpush(f"{settings.namespace}:filter:tasks", *tasks[50:])
    assert len(collect(raw, replies, 50)) == 50
    assert raw.hgetall(stats) == {node: str(before + 100)}, "one field per node, never reset"


def next_broadcast(pubsub: redis.client.PubSub, timeout: float) -> float | None:
    """When the next broadcast arrived (monotonic clock), or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pubsub.get_message(timeout=0.05) is not None:
            return time.monotonic()
    return None


@pytest.mark.slow
def test_a_restarted_node_does_not_broadcast_before_its_interval_is_up(
    deploy: Deploy, settings: Settings, raw: redis.Redis
):
    interval = 2.0  # long enough that the node is back while its old lease still runs
    deployment = deploy("insult", broadcast_interval=interval)
    (pid,) = deployment.node_pids()
    pubsub = raw.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{settings.namespace}:insults:broadcast")
    try:
        last_before = next_broadcast(pubsub, 3 * interval)
        assert last_before is not None, "no first broadcast"
        os.kill(pid, signal.SIGKILL)  # right after it broadcast, holding a fresh lease
        first_after = next_broadcast(pubsub, 4 * interval)
    finally:
        pubsub.close()
    assert first_after is not None, "the restarted node never broadcast"
    # Slowness only makes this gap longer; only renewing the dead life's lease shortens it.
    assert first_after - last_before >= interval
