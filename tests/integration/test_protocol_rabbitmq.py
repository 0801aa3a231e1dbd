"""The RabbitMQ wire protocol, tested with bare pika as a client in another language would.

Only ``docs/PROTOCOL.md (RabbitMQ)`` is assumed: queue names, message bodies, properties.
The services run through the launcher, in a namespace of their own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import pika
import pika.exceptions
import psutil
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from middlewares.cluster.store import RedisInsultStore
from middlewares.contract import BrokerUnavailable, ServiceTimeout
from middlewares.core import load_default_insults
from middlewares.launch.deployment import Deployment
from middlewares.rabbitmq import rpc as amqp_rpc
from middlewares.rabbitmq.filter_worker import InsultFollower
from middlewares.registry import get_backend
from middlewares.service import InsultService
from middlewares.settings import Settings
from tests.helpers import free_port, protocol_section, require, wait_for

BACKEND = get_backend("rabbitmq")


class RawClient:
    """A bare pika client of the documented protocol: direct reply-to, nothing else."""

    def __init__(self, settings: Settings) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
        self.channel = self.connection.channel()
        self.channel.basic_consume("amq.rabbitmq.reply-to", self._on_reply, auto_ack=True)
        self.replies: dict[str, bytes] = {}

    def _on_reply(self, channel, method, properties, body: bytes) -> None:
        self.replies[properties.correlation_id] = body

    def publish(self, queue: str, body: bytes, **properties: object) -> None:
        """Publish a raw message to a queue through the default exchange."""
        self.channel.basic_publish("", queue, body, pika.BasicProperties(**properties))

    def call(self, queue: str, body: bytes | dict, timeout: float = 10.0) -> bytes:
        """Publish with direct reply-to and return the reply body."""
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        correlation_id = uuid.uuid4().hex
        self.publish(queue, raw, reply_to="amq.rabbitmq.reply-to", correlation_id=correlation_id)
        deadline = time.monotonic() + timeout
        while correlation_id not in self.replies:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no reply from {queue} within {timeout} s"
            self.connection.process_data_events(time_limit=remaining)
        return self.replies.pop(correlation_id)

    def call_json(self, queue: str, body: bytes | dict) -> dict:
        """:meth:`call`, decoding a JSON reply."""
        return json.loads(self.call(queue, body))

    def message_count(self, queue: str) -> int:
        """Ready messages in a queue (the queue must exist)."""
        return self.channel.queue_declare(queue, passive=True).method.message_count

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


@pytest.fixture
def rabbit(settings: Settings) -> Iterator[Settings]:
    """Settings for a test that needs RabbitMQ; its namespace is cleaned up afterwards."""
    require(BACKEND, settings)
    yield settings
    BACKEND.cleanup(settings)


@pytest.fixture
def middleware(rabbit: Settings) -> str:
    """Only RabbitMQ here: the ``deploy`` fixture starts its services, in ``rabbit``'s
    namespace."""
    return "rabbitmq"


@pytest.fixture
def raw(rabbit: Settings) -> Iterator[RawClient]:
    """A bare pika client."""
    client = RawClient(rabbit)
    yield client
    client.close()


def names(settings: Settings) -> dict[str, str]:
    """The documented names of a namespace."""
    ns = settings.namespace
    return {
        "requests": f"{ns}.insults.requests",
        "broadcast": f"{ns}.insults.broadcast",
        "tasks": f"{ns}.filter.tasks",
        "results": f"{ns}.filter.results",
        "stats": f"{ns}.filter.stats",
        "echo": f"{ns}.echo.requests",
    }


BAD_REQUESTS = [
    (b"not json at all", "not valid JSON"),
    (b"\xff\xfe\x00", "not valid JSON"),
    (b'["add_insult", "tonto"]', "must be a JSON object"),
    ({"op": "fly", "args": []}, "unknown op"),
    ({"op": "add_insult", "args": "tonto"}, "args must be a JSON array"),
    ({"op": "add_insult", "args": []}, "takes 1 argument"),
    ({"op": "add_insult", "args": [42]}, "insult must be a string"),
    ({"op": "add_insult", "args": ["x" * 65]}, "over the limit"),
    ({"op": "add_insult", "args": ["   "]}, "insult is empty"),
]


def test_insult_requests_get_ok_replies_with_their_correlation_id(deploy, raw, rabbit):
    deploy("insult", load_defaults=False)
    queue = names(rabbit)["requests"]
    assert raw.call_json(queue, {"op": "add_insult", "args": ["Zote"]}) == {
        "ok": True,
        "result": True,
    }
    assert raw.call_json(queue, {"op": "add_insult", "args": [" ZOTE "]})["result"] is False
    assert raw.call_json(queue, {"op": "get_insults", "args": []})["result"] == ["zote"]
    assert raw.call_json(queue, {"op": "random_insult"})["result"] == "zote"


def test_bad_insult_requests_get_error_replies_naming_the_problem(deploy, raw, rabbit):
    deploy("insult")
    queue = names(rabbit)["requests"]
    for body, problem in BAD_REQUESTS:
        reply = raw.call_json(queue, body)
        assert reply["ok"] is False, body
        assert problem in reply["error"], (body, reply)
    assert raw.call_json(queue, {"op": "add_insult", "args": ["after bad input"]})["result"]


def test_unanswerable_requests_are_dropped_without_stalling_the_service(deploy, raw, rabbit):
    deploy("insult")
    queue = names(rabbit)["requests"]
    raw.publish(queue, b'{"op": "random_insult", "args": []}')  # no reply_to
    raw.publish(queue, b"\x00 not json, no reply_to")
    raw.publish(queue, b'{"op": "random_insult"}', reply_to="no-such-queue", correlation_id="1")
    raw.publish(queue, b'{"op": "random_insult"}', reply_to="amq.rabbitmq.reply-to.bogus")
    assert raw.call_json(queue, {"op": "random_insult"})["result"] in load_default_insults()
    assert wait_for(lambda: raw.message_count(queue) == 0, timeout=5)


def test_broadcasts_reach_a_bare_fanout_subscriber_as_utf8(deploy, raw, rabbit):
    deploy("insult", broadcast_interval=0.2, load_defaults=False)
    raw.call_json(names(rabbit)["requests"], {"op": "add_insult", "args": ["Ñoño 🙂"]})
    queue = raw.channel.queue_declare("", exclusive=True).method.queue
    raw.channel.queue_bind(queue, names(rabbit)["broadcast"])
    received: list[bytes] = []
    raw.channel.basic_consume(queue, lambda ch, m, p, body: received.append(body), auto_ack=True)
    deadline = time.monotonic() + 5
    while len(received) < 2 and time.monotonic() < deadline:
        raw.connection.process_data_events(time_limit=0.2)
    assert received[:2] == ["ñoño 🙂".encode()] * 2


def test_echo_returns_the_body_byte_for_byte(deploy, raw, rabbit):
    deploy("echo")
    for body in (b"hello", b"\x00\xff\xfe binary", "¿qué? 🙂".encode(), b""):
        assert raw.call(names(rabbit)["echo"], body) == body


BAD_TASKS = [
    (b"{not json", "not valid JSON"),
    (b'"a bare string"', "must be a JSON object"),
    ({"txt": "wrong field"}, '"text" field'),
    ({"text": 5}, "text must be a string"),
    ({"text": ""}, "text is empty"),
    ({"text": "x" * 2049}, "over the limit"),
]


def test_filter_tasks_get_results_or_error_answers(deploy, raw, rabbit):
    deploy("filter", max_text_bytes=2048)
    queue = names(rabbit)["tasks"]
    assert raw.call_json(queue, {"text": "Eres TONTO, muy tonto."}) == {
        "text": "Eres CENSORED, muy CENSORED."
    }
    for body, problem in BAD_TASKS:
        reply = raw.call_json(queue, body)
        assert reply["ok"] is False, body
        assert problem in reply["error"], (body, reply)
    assert raw.call_json(queue, {"text": "still feo"}) == {"text": "still CENSORED"}


def test_bad_tasks_without_reply_to_are_dropped_and_never_requeued(deploy, raw, rabbit):
    deploy("filter")
    queue = names(rabbit)["tasks"]
    for body in (b"{not json", b'{"text": 7}', b"\xff"):
        raw.publish(queue, body, delivery_mode=2)
    # One worker takes tasks in order: this answer comes after the bad ones were handled.
    assert raw.call_json(queue, {"text": "and then, fool"}) == {"text": "and then, CENSORED"}
    assert raw.message_count(queue) == 0


def test_a_task_without_reply_to_lands_in_the_result_list(deploy, raw, rabbit):
    deploy("filter")
    raw.publish(names(rabbit)["tasks"], b'{"text": "solo un bobo"}', correlation_id="t-1")
    stored: dict[str, bytes] = {}

    def take_stored() -> bool:
        # The launcher's readiness probe left its own result there too.
        _method, properties, body = raw.channel.basic_get(names(rabbit)["results"], True)
        if body is not None:
            stored[properties.correlation_id] = body
        return "t-1" in stored

    assert wait_for(take_stored, timeout=10)
    assert json.loads(stored["t-1"]) == {"text": "solo un CENSORED"}


def test_every_filter_worker_reports_its_acknowledged_count_to_the_stats_exchange(
    deploy, raw, rabbit
):
    exchange = names(rabbit)["stats"]
    raw.channel.exchange_declare(exchange, exchange_type="fanout")
    report_queue = raw.channel.queue_declare("", exclusive=True).method.queue
    raw.channel.queue_bind(report_queue, exchange)
    reports: list[dict] = []
    raw.channel.basic_consume(
        report_queue, lambda ch, m, props, body: reports.append(json.loads(body)), True
    )

    def pump_until(condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            raw.connection.process_data_events(time_limit=0.05)
        return condition()

    deployment = deploy("filter")  # the stock deployment, not the dynamic-scaling master
    # The launcher's readiness check may have sent a task: count from a report made after.
    started = time.time()
    assert pump_until(lambda: any(report["time"] > started for report in reports), timeout=5)
    before = reports[-1]["acked"]
    for n in range(5):
        raw.call_json(names(rabbit)["tasks"], {"text": f"task {n}, tonto"})
    assert pump_until(lambda: reports[-1]["acked"] == before + 5, timeout=5), reports[-1]
    deployment.stop()
    assert pump_until(lambda: reports[-1]["final"], timeout=5), reports[-1]
    assert {report["worker"] for report in reports} == {reports[0]["worker"]}
    assert all(set(report) == {"worker", "acked", "time", "final"} for report in reports)
    counts = [report["acked"] for report in reports]
    assert counts == sorted(counts), "a worker's count went backwards"
    assert [report["final"] for report in reports].count(True) == 1
    assert reports[-1]["acked"] == before + 5


def test_the_insult_follower_connects_with_the_full_timeout_and_asks_for_at_most_1_s(
    raw, rabbit, monkeypatch
):
    # A loaded broker can take over a second to finish an AMQP handshake: only the
    # get_insults request may be bounded by the 1 s fetch timeout, never connecting.
    connect_timeouts: list[float] = []
    real_connect = amqp_rpc.connect

    def recording_connect(settings: Settings, role: str) -> pika.BlockingConnection:
        connect_timeouts.append(settings.timeout)
        return real_connect(settings, role)

    monkeypatch.setattr(amqp_rpc, "connect", recording_connect)
    # An InsultService that takes requests and never answers them.
    raw.channel.queue_declare(names(rabbit)["requests"])
    raw.channel.basic_consume(names(rabbit)["requests"], lambda *delivery: None)
    follower = InsultFollower(rabbit)
    try:
        assert connect_timeouts == [rabbit.timeout] and rabbit.timeout > 1
        with pytest.raises(ServiceTimeout, match="within 1 s"):
            follower.fetch()
    finally:
        follower.close()


def test_reading_the_result_list_leaves_it_intact(deploy, raw, rabbit):
    deploy("filter", result_limit=3)
    with BACKEND.filter_client(rabbit) as client:
        for n in range(5):
            client.filter(f"text {n}, tonto")
        assert client.get_results(10) == [f"text {n}, CENSORED" for n in (4, 3, 2)]
        assert client.get_results(10) == client.get_results(3)
        assert client.get_results(1) == ["text 4, CENSORED"]
    assert raw.message_count(names(rabbit)["results"]) == 3


def _doc_example() -> str:
    text = protocol_section("RabbitMQ")
    section = text[text.index("### A ten-line client") :]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_ten_line_client_of_the_docs_works(deploy, rabbit):
    deploy("insult")
    deploy("filter")
    environment = {
        **os.environ,
        "INSULTBENCH_NAMESPACE": rabbit.namespace,
        "AMQP_URL": rabbit.amqp_url,
    }
    finished = subprocess.run(
        [sys.executable, "-c", _doc_example()],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    assert json.loads(lines[0]) == {"ok": True, "result": True}
    assert json.loads(lines[1]) == {"text": "Eres un CENSORED."}


def test_calling_a_service_never_started_fails_at_once(rabbit):
    started = time.monotonic()
    with BACKEND.echo_client(rabbit) as client, pytest.raises(BrokerUnavailable, match="echo"):
        client.echo("anyone?")
    assert time.monotonic() - started < rabbit.timeout


def test_an_unreachable_broker_is_named_with_the_password_masked(settings):
    url = f"amqp://guest:s3cret@127.0.0.1:{free_port()}/%2F"
    with pytest.raises(BrokerUnavailable) as raised:
        BACKEND.check(settings.with_changes(amqp_url=url, timeout=2.0))
    message = str(raised.value)
    assert "s3cret" not in message
    assert "amqp://guest:***@127.0.0.1" in message
    assert "python -m middlewares brokers up" in message


def test_cleanup_deletes_the_namespace_and_nothing_else(deploy, raw, rabbit):
    for deployment in (deploy("insult"), deploy("filter"), deploy("echo")):
        deployment.stop()  # running services would declare their queues again
    bystander = f"{rabbit.namespace}-bystander.filter.tasks"
    raw.channel.queue_declare(bystander)
    BACKEND.cleanup(rabbit)
    for name in names(rabbit).values():
        channel = raw.connection.channel()
        is_exchange = name.endswith(("broadcast", "stats"))
        declare = channel.exchange_declare if is_exchange else channel.queue_declare
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
            declare(name, passive=True)
    raw.channel.queue_declare(bystander, passive=True)
    raw.channel.queue_delete(bystander)


@pytest.mark.slow
def test_a_sigtermed_worker_finishes_its_task_and_answers_nothing_twice(deploy, raw, rabbit):
    deployment = deploy("filter", workers=2)
    worker = next(
        process
        for process in map(psutil.Process, deployment.worker_pids())
        if "filter_worker" in " ".join(process.cmdline())
    )
    reply_queue = raw.channel.queue_declare("", exclusive=True).method.queue
    answers: Counter[str] = Counter()
    raw.channel.basic_consume(
        reply_queue, lambda ch, m, props, body: answers.update([props.correlation_id]), True
    )
    total = 4000
    for n in range(total):
        raw.publish(
            names(rabbit)["tasks"],
            json.dumps({"text": f"task {n} tonto"}).encode(),
            reply_to=reply_queue,
            correlation_id=str(n),
            delivery_mode=2,
        )
    terminated = False
    deadline = time.monotonic() + 60
    while len(answers) < total and time.monotonic() < deadline:
        raw.connection.process_data_events(time_limit=0.2)
        if not terminated and len(answers) >= total // 4:
            worker.send_signal(signal.SIGTERM)
            terminated = True
    assert terminated
    # It exits by itself (and the launcher starts a new worker).
    assert wait_for(lambda: not worker.is_running(), timeout=10)
    assert len(answers) == total, f"{total - len(answers)} tasks were never answered"
    assert max(answers.values()) == 1, "a task was answered twice"


def test_the_launcher_stops_every_process_on_sigterm(rabbit):
    command = Deployment("rabbitmq", "filter", rabbit, workers=2).command()
    launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: len(psutil.Process(launcher.pid).children()) == 2, timeout=10)
        children = psutil.Process(launcher.pid).children()
        with BACKEND.filter_client(rabbit) as client:
            assert client.filter("ready, fool?", timeout=15) == "ready, CENSORED?"
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(20) == 0
        assert not [child.pid for child in children if child.is_running()]
        assert b"stopped after" in launcher.stderr.read()
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


class DyingNode(threading.Thread):
    """A bare consumer that takes one message of a queue and then dies without
    acknowledging it, as a SIGKILLed node does: the broker sees its connection go.

    With ``reply`` it first answers the message, so the message is answered twice once
    another node has taken it over.
    """

    def __init__(
        self, settings: Settings, queue: str, durable: bool = False, reply: bytes | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.settings, self.queue, self.durable, self.reply = settings, queue, durable, reply
        self.ready = threading.Event()
        self.taken: str | None = None

    def run(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.settings.amqp_url))
        channel = connection.channel()
        channel.queue_declare(self.queue, durable=self.durable)
        channel.basic_qos(prefetch_count=1)
        channel.basic_consume(self.queue, self._take)
        self.ready.set()
        deadline = time.monotonic() + 20
        while self.taken is None and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)
        connection.close()  # with the message unacknowledged: the broker requeues it

    def _take(self, channel, method, properties, body: bytes) -> None:
        if self.reply is not None:
            reply_properties = pika.BasicProperties(correlation_id=properties.correlation_id)
            channel.basic_publish("", properties.reply_to, self.reply, reply_properties)
        self.taken = properties.correlation_id

    def take_one(self) -> None:
        """Start consuming; return once the consumer is registered."""
        self.start()
        assert self.ready.wait(10), "the dying node could not start consuming"


def test_a_request_a_dead_node_held_is_answered_by_another_over_direct_reply_to(
    deploy, raw, rabbit
):
    queue = names(rabbit)["requests"]
    dying = DyingNode(rabbit, queue)
    dying.take_one()
    body = json.dumps({"op": "add_insult", "args": ["redelivered"]}).encode()
    raw.publish(queue, body, reply_to="amq.rabbitmq.reply-to", correlation_id="held-1")
    dying.join(30)
    assert dying.taken == "held-1"
    # The node starts after the requester published: the reply can only reach the
    # requester's direct reply-to channel through the redelivered request.
    deploy("insult", nodes=1, load_defaults=False)
    deadline = time.monotonic() + 10
    while "held-1" not in raw.replies and time.monotonic() < deadline:
        raw.connection.process_data_events(time_limit=0.1)
    assert json.loads(raw.replies["held-1"]) == {"ok": True, "result": True}


def test_the_client_keeps_the_first_answer_and_ignores_a_redelivered_duplicate(deploy, rabbit):
    dead_answer = json.dumps({"ok": True, "result": "from the dead node"}).encode()
    dying = DyingNode(rabbit, names(rabbit)["requests"], reply=dead_answer)
    dying.take_one()
    # A long timeout: the request must not expire while the node below starts.
    with BACKEND.insult_client(rabbit.with_changes(timeout=60)) as client:
        assert client.random_insult() == "from the dead node"
        dying.join(30)
        deployment = deploy("insult", nodes=1, load_defaults=False)
        # The node answers the redelivered request (an empty store: ""), then the
        # launcher's readiness probe; the duplicate answer is on its way to the client.
        assert wait_for(
            lambda: sum(deployment.node_counters().values()) >= 2,
            timeout=10,
        )
        assert client.add_insult("only once") is True
        assert client.random_insult() == "only once"
        assert client.get_insults() == ["only once"]


def test_a_filter_task_answered_twice_is_handed_out_once(deploy, rabbit):
    dying = DyingNode(
        rabbit, names(rabbit)["tasks"], durable=True, reply=b'{"text": "first answer"}'
    )
    dying.take_one()
    with BACKEND.filter_client(rabbit) as client:
        task_id = client.submit("eres tonto")
        dying.join(30)
        assert dying.taken == task_id
        deploy("filter", nodes=1)
        # The node answers the redelivered task: to the result list, then to the client.
        assert wait_for(lambda: "eres CENSORED" in client.get_results(10), timeout=10)
        assert client.wait([task_id], timeout=5) == {task_id: "first answer"}
        assert client.wait([task_id], timeout=1) == {}, "a task was handed out twice"


@pytest.mark.slow
def test_a_restarted_node_goes_on_counting_from_its_last_count(deploy, rabbit):
    deployment = deploy("filter", nodes=1)

    def counters() -> dict[str, int]:
        return deployment.node_counters()

    with BACKEND.filter_client(rabbit) as client:
        for n in range(20):
            client.filter(f"{n} tonto")
        # 20 tasks and the readiness probe, all published by the node's flusher.
        assert wait_for(lambda: sum(counters().values()) == 21, timeout=10)
        before = counters()
        victim = deployment.node_pids()[0]
        os.kill(victim, signal.SIGKILL)
        assert wait_for(lambda: deployment.node_pids() not in ([], [victim]), timeout=20)
        for n in range(10):
            client.filter(f"{n} feo", timeout=30)
    (node,) = before
    assert wait_for(lambda: counters().get(node, 0) == before[node] + 10, timeout=10), counters()
    assert set(counters()) == {node}, "the restarted node keeps its id"


def test_a_node_whose_redis_is_gone_answers_with_an_error_naming_it():
    gone = redis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    service = InsultService(RedisInsultStore(gone, "ibtest-gone"), Settings())
    for op, args in (("add_insult", ["tonto"]), ("get_insults", []), ("random_insult", [])):
        body = json.dumps({"op": op, "args": args}).encode()
        reply = json.loads(service.dispatch(body))
        assert reply["ok"] is False
        assert "shared insult store (Redis) failed" in reply["error"]


def test_cleanup_deletes_the_redis_keys_of_the_n_node_form_and_nothing_else(deploy, rabbit):
    for service in ("insult", "filter"):
        deploy(service, nodes=1).stop()
    client = redis.Redis.from_url(rabbit.redis_url, socket_timeout=5)
    ns = rabbit.namespace
    bystander = f"{ns}-bystander:insults:store"
    try:
        keys = [f"{ns}:insults:store", f"{ns}:stats:insult", f"{ns}:stats:filter"]
        assert client.exists(*keys) == len(keys)
        client.sadd(bystander, "tonto")
        BACKEND.cleanup(rabbit)
        assert client.exists(*keys, f"{ns}:insults:broadcaster") == 0
        assert client.exists(bystander) == 1
    finally:
        client.delete(bystander)
        client.close()


def test_the_insult_service_spends_work_ms_on_every_request(deploy, raw, rabbit):
    deploy("insult", nodes=1, work_ms=50.0)
    started = time.monotonic()
    for _ in range(10):
        assert raw.call_json(names(rabbit)["requests"], {"op": "random_insult"})["ok"]
    assert time.monotonic() - started >= 10 * 0.050
