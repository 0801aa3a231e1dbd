"""Poison messages, sent as a hostile client would, never stop a service.

Each middleware gets the messages that used to kill its services (a task of ``[``
repeated 100,000 times, JSON nested deeper than Python's recursion limit, odd shapes
such as ``{"op": []}``, a lone surrogate) through its own protocol: raw Redis commands,
bare pika, raw XML-RPC over HTTP, raw Pyro4 messages. Every one is answered with an
error or dropped (when it names no usable reply address), the next good request is
answered within 2 s, and the launcher restarted nothing. One deployment per middleware
and service serves every case of this module.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import pika
import pytest
import redis

from middlewares.contract import InsultClient
from middlewares.launch.deployment import Deployment
from middlewares.registry import get_backend
from middlewares.settings import Settings
from tests.helpers import SharedDeployments

#: What a good request after the poison must be answered within.
NEXT_ANSWER_SECONDS = 2.0
DEEP = 5000

Deployed = tuple[Deployment, Settings]


def restarts(deployment: Deployment) -> int:
    """How many times the launcher restarted a process of the deployment."""
    return deployment.log_tail(100_000).count("; restarting it")


@pytest.fixture
def deployed(shared_deploy: SharedDeployments) -> Callable[[str, str], Deployed]:
    """``deployed(middleware, service)``: the module's one deployment of the pair."""

    def get(middleware: str, service: str) -> Deployed:
        deployment = shared_deploy(middleware, service, timeout=5.0, broadcast_interval=60.0)
        return deployment, deployment.settings

    return get


def assert_still_serving(deployment: Deployment, settings: Settings) -> None:
    """A good request is answered within 2 s, and nothing was restarted more than once."""
    backend = get_backend(deployment.middleware)
    quick = settings.with_changes(timeout=NEXT_ANSWER_SECONDS)
    if deployment.service == "insult":
        with backend.insult_client(quick) as insults:
            assert isinstance(insults, InsultClient)
            assert insults.add_insult("still serving") in (True, False)
    elif deployment.service == "filter":
        with backend.filter_client(quick) as texts:
            assert texts.filter("eres tonto", timeout=NEXT_ANSWER_SECONDS) == "eres CENSORED"
    else:
        with backend.echo_client(quick) as echo:
            assert echo.echo("still here") == "still here"
    assert restarts(deployment) <= 1, deployment.log_tail()


# -- Redis: raw lists ------------------------------------------------------------------------

REDIS_QUEUES = {"insult": "insults:requests", "filter": "filter:tasks", "echo": "echo:requests"}
REDIS_AREAS = {"insult": "insults", "filter": "filter", "echo": "echo"}


def _deep(inner: str = "") -> str:
    return "[" * DEEP + inner + "]" * DEEP


#: The reply address of a poison message, replaced by the test's reply list.
R = '"reply_to": "{R}"'

#: (service, body with {R} for the reply list, expected error or None if dropped)
REDIS_POISON = [
    ("insult", "[" * 100_000, None),
    ("insult", '{"id": "p1", "op": "add_insult", "args": [' + _deep() + "], " + R + "}", None),
    ("insult", '{"id": "p2", "op": [], "args": [], ' + R + "}", "unknown op []"),
    ("insult", '{"id": "p3", "op": "add_insult", "args": {"a": []}, ' + R + "}", "args must"),
    ("insult", '{"id": "p4", "op": "add_insult", "args": [["x"]], ' + R + "}", "string"),
    ("insult", '{"id": "p5", "op": "add_insult", "args": ["\\ud800"], ' + R + "}", "Unicode"),
    ("insult", '{"id": "p6", "op": "random_insult", "args": [], "reply_to": "{R}\\ud800"}', None),
    ("insult", '{"id": ' + "9" * 5000 + ', "op": "get_insults", ' + R + "}", None),
    ("filter", "[" * 100_000, None),
    ("filter", '{"id": "f1", "text": ' + _deep('"x"') + ', "reply_to": "{R}"}', None),
    ("filter", '{"id": "f2", "text": [], "reply_to": "{R}"}', "text must be a string"),
    ("filter", '{"id": [], "text": "tonto", "reply_to": "{R}"}', "task id must be"),
    ("filter", '{"id": "f3\\ud800", "text": "tonto", "reply_to": "{R}"}', "encode"),
    ("filter", '{"id": "f4", "text": "\\udfff tonto", "reply_to": "{R}"}', "Unicode"),
    ("filter", '{"id": "f5", "text": "tonto", "reply_to": {"a": []}}', None),
    ("filter", '{"id": "f6", "text": "' + "x" * 7 * 65536 + '", "reply_to": "{R}"}', None),
    ("echo", "[" * 100_000, None),
    ("echo", '{"id": "e1", "op": "echo", "args": [' + _deep() + '], "reply_to": "{R}"}', None),
]


@pytest.mark.parametrize(
    ("service", "template", "expected"),
    REDIS_POISON,
    ids=[f"{s}-{t[:24]}" for s, t, _ in REDIS_POISON],
)
def test_redis_answers_or_drops_poison_and_serves_the_next_request(
    deployed, service: str, template: str, expected: str | None
):
    deployment, settings = deployed("redis", service)
    ns = settings.namespace
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
    try:
        replies = f"{ns}:{REDIS_AREAS[service]}:replies:{uuid.uuid4().hex}"
        client.lpush(f"{ns}:{REDIS_QUEUES[service]}", template.replace("{R}", replies))
        assert_still_serving(deployment, settings)
        answers = [json.loads(raw) for raw in client.lrange(replies, 0, -1)]
        if expected is None:
            assert answers == []
        else:
            assert len(answers) == 1 and answers[0]["ok"] is False
            assert expected in answers[0]["error"]
        area = REDIS_AREAS[service]
        assert client.llen(f"{ns}:{REDIS_QUEUES[service]}") == 0
        assert all(client.llen(k) == 0 for k in client.scan_iter(f"{ns}:{area}:processing:*"))
        assert client.llen(f"{ns}:{area}:dead") == 0
    finally:
        client.close()


# -- RabbitMQ: bare pika ---------------------------------------------------------------------

RABBIT_POISON = [
    ("insult", b"[" * 100_000, "nests deeper"),
    ("insult", ('{"op": "add_insult", "args": [' + _deep() + "]}").encode(), "nests deeper"),
    ("insult", b'{"op": [], "args": []}', "unknown op []"),
    ("insult", b'{"op": "add_insult", "args": {"a": []}}', "args must"),
    ("insult", b'{"op": "add_insult", "args": ["\\ud800"]}', "Unicode"),
    ("filter", b"[" * 100_000, "nests deeper"),
    ("filter", ('{"text": ' + _deep('"x"') + "}").encode(), "nests deeper"),
    ("filter", b'{"text": []}', "text must be a string"),
    ("filter", b'{"text": "\\ud800"}', "Unicode"),
    ("filter", b"\xff" * (7 * 65536), "over the limit"),
]


@pytest.mark.parametrize(
    ("service", "body", "expected"),
    RABBIT_POISON,
    ids=[f"{s}-{b[:24]!r}" for s, b, _ in RABBIT_POISON],
)
def test_rabbitmq_answers_poison_with_an_error_and_serves_the_next_request(
    deployed, service: str, body: bytes, expected: str
):
    deployment, settings = deployed("rabbitmq", service)
    queue = f"{settings.namespace}.{'insults.requests' if service == 'insult' else 'filter.tasks'}"
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    try:
        channel = connection.channel()
        replies = channel.queue_declare("", exclusive=True).method.queue
        answers: list[bytes] = []
        channel.basic_consume(replies, lambda ch, m, p, b: answers.append(b), auto_ack=True)
        properties = pika.BasicProperties(reply_to=replies, correlation_id="poison")
        channel.basic_publish("", queue, body, properties)
        deadline = time.monotonic() + NEXT_ANSWER_SECONDS
        while not answers and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)
        assert len(answers) == 1, "the poison got no answer within 2 s"
        answer = json.loads(answers[0])
        assert answer["ok"] is False and expected in answer["error"]
    finally:
        connection.close()
    assert_still_serving(deployment, settings)


def test_a_port_that_accepts_but_never_speaks_amqp_is_one_line_and_status_2():
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"amqp://guest:guest@127.0.0.1:{silent.getsockname()[1]}/%2F"
        command = [sys.executable, "-m", "middlewares", "serve", "rabbitmq", "insult"]
        done = subprocess.run(
            [*command, "--amqp-url", url, "--timeout", "1", "--namespace", "ibtest-silent"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach"), done.stderr
    assert "does not speak AMQP" in lines[0]


# -- XML-RPC: raw HTTP -----------------------------------------------------------------------


def _xmlrpc(settings: Settings, role: str, method: str, param: str) -> tuple[int, str]:
    """POST one methodCall with a raw parameter; (fault code or 0, fault string or body)."""
    port = {"insult": settings.insult_port, "filter": settings.filter_port}.get(
        role, settings.echo_port
    )
    body = (
        f"<?xml version='1.0'?><methodCall><methodName>{method}</methodName>"
        f"<params><param>{param}</param></params></methodCall>"
    ).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", f"/{settings.namespace}/{role}", body)
        response = connection.getresponse()
        text = response.read().decode()
    finally:
        connection.close()
    assert response.status == 200, (response.status, text[:200])
    if "<fault>" not in text:
        return 0, text
    code = int(text.split("<int>", 1)[1].split("</int>", 1)[0])
    return code, text.split("<string>", 1)[1].split("</string>", 1)[0]


def _xml_deep(levels: int) -> str:
    opening = "<value><array><data>" * levels
    return opening + "<value><string>x</string></value>" + "</data></array></value>" * levels


XMLRPC_POISON = [
    ("echo", "echo", _xml_deep(2000), "nested too deeply"),
    ("insult", "add_insult", _xml_deep(2000), "insult must be a string"),
    (
        "insult",
        "add_insult",
        "<value><struct><member><name>op</name><value><array><data/>"
        "</array></value></member></struct></value>",
        "insult must be a string",
    ),
    ("filter", "submit", _xml_deep(2000), "text must be a string"),
]


@pytest.mark.parametrize(("service", "method", "param", "expected"), XMLRPC_POISON)
def test_xmlrpc_answers_poison_with_a_fault_and_serves_the_next_request(
    deployed, service: str, method: str, param: str, expected: str
):
    deployment, settings = deployed("xmlrpc", service)
    code, message = _xmlrpc(settings, service, method, param)
    assert code == -32602 and expected in message
    assert_still_serving(deployment, settings)


# -- Pyro4: raw messages ---------------------------------------------------------------------


def _pyro_raw(settings: Settings, role: str, payload: Callable[[str], bytes]) -> object:
    """Send one raw serpent INVOKE message to the object of ``role``; what came back."""
    import Pyro4
    import Pyro4.message
    import Pyro4.util

    from middlewares.pyro.transport import configure, object_name

    configure()
    uri = Pyro4.locateNS("127.0.0.1", settings.pyro_ns_port).lookup(object_name(settings, role))
    proxy = Pyro4.Proxy(uri)
    proxy._pyroTimeout = 10
    proxy._pyroBind()
    serializer = Pyro4.util.get_serializer("serpent")
    try:
        message = Pyro4.message.Message(
            Pyro4.message.MSG_INVOKE, payload(uri.object), serializer.serializer_id, 0, 7
        )
        proxy._pyroConnection.send(message.to_bytes())
        reply = Pyro4.message.Message.recv(
            proxy._pyroConnection, [Pyro4.message.MSG_RESULT], hmac_key=None
        )
        return serializer.deserializeData(reply.data, compressed=False)
    finally:
        proxy._pyroRelease()


def _call(method: str, argument: str) -> Callable[[str], bytes]:
    return lambda target: f"('{target}', '{method}', ({argument},), {{}})".encode()


PYRO_POISON = [
    ("insult", lambda target: b"(" * 100_000, "nested"),
    ("insult", _call("add_insult", "{'op': []}"), "insult must be a string"),
    ("insult", _call("add_insult", "[" * 150 + "]" * 150), "insult must be a string"),
    ("echo", _call("echo", "[" * 150 + "'x'" + "]" * 150), None),
    ("filter", _call("submit", "[" * 150 + "]" * 150), "text must be a string"),
]


@pytest.mark.parametrize(("service", "payload", "expected"), PYRO_POISON)
def test_pyro_answers_poison_with_an_error_and_serves_the_next_request(
    deployed, service: str, payload: Callable[[str], bytes], expected: str | None
):
    deployment, settings = deployed("pyro", service)
    answer = _pyro_raw(settings, service, payload)
    if expected is not None:
        assert isinstance(answer, Exception) and expected in str(answer), repr(answer)[:300]
    assert_still_serving(deployment, settings)
