"""The XML-RPC wire protocol of docs/PROTOCOL.md (XML-RPC), spoken with xmlrpc.client and raw HTTP.

Nothing here uses this project's clients except where a test says so: each test talks
to the services as a program written from the protocol document alone would, and checks
that bad or unanswerable requests are refused or dropped while the service keeps serving.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from xmlrpc.server import SimpleXMLRPCServer

import psutil
import pytest

from middlewares.contract import BrokerUnavailable, MiddlewareError
from middlewares.direct.gate import RequestGate
from middlewares.launch.processes import Supervisor
from middlewares.registry import get_backend
from middlewares.secret import SECRET_ENV, user_secret
from middlewares.settings import Settings
from middlewares.xmlrpc.clients import Remote
from middlewares.xmlrpc.transport import NODE_LEAVING, RpcServer
from tests.helpers import (
    SECRET,
    Deploy,
    adds_a_new_insult,
    free_port,
    protocol_section,
    second_insult_service,
    wait_for,
    with_secret,
)
from tests.worker_protocol import (
    check_a_restarted_workers_tasks_are_requeued,
    check_a_silent_workers_tasks_are_requeued,
)

PORTS = {"insult": "insult_port", "filter": "filter_port", "echo": "echo_port"}


@pytest.fixture
def middleware(settings: Settings) -> Iterator[str]:
    """Only XML-RPC here."""
    yield "xmlrpc"
    get_backend("xmlrpc").cleanup(settings)


def url_of(settings: Settings, role: str) -> str:
    """The URL of a service, as the protocol document gives it."""
    port = getattr(settings, PORTS[role])
    return f"http://{settings.host}:{port}/{settings.namespace}/{role}"


class _TimeoutTransport(xmlrpc.client.Transport):
    def make_connection(self, host: str) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = 10
        return connection


def proxy_of(settings: Settings, role: str) -> xmlrpc.client.ServerProxy:
    """A stock ServerProxy (with a timeout) of a service."""
    return xmlrpc.client.ServerProxy(
        url_of(settings, role), transport=_TimeoutTransport(), allow_none=True
    )


def http_connection(settings: Settings, role: str) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(settings.host, getattr(settings, PORTS[role]), timeout=10)


def post(
    connection: http.client.HTTPConnection, path: str, body: bytes
) -> http.client.HTTPResponse:
    connection.request("POST", path, body, {"Content-Type": "text/xml"})
    return connection.getresponse()


def path_of(settings: Settings, role: str) -> str:
    return f"/{settings.namespace}/{role}"


def fault_of(body: bytes) -> xmlrpc.client.Fault:
    with pytest.raises(xmlrpc.client.Fault) as raised:
        xmlrpc.client.loads(body)
    return raised.value


# -- the document's own example ----------------------------------------------------------


def test_the_ten_line_script_adds_an_insult_and_gets_a_censored_text(deploy: Deploy, settings):
    deploy("insult")
    deploy("filter")
    script = re.search(r"```python\n(.*?)```", protocol_section("XML-RPC"), re.DOTALL).group(1)
    script = (
        script.replace('ns = "insultbench"', f"ns = {settings.namespace!r}")
        .replace(":8100/", f":{settings.insult_port}/")
        .replace(":8101/", f":{settings.filter_port}/")
    )
    assert len(script.strip().splitlines()) <= 12
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(script, "PROTOCOL.md", "exec"), {})
    lines = output.getvalue().splitlines()
    assert lines[0] == "True"
    assert lines[1] == "eres un CENSORED"
    assert "'CENSORED!'" in lines[2]
    assert "zascandil" in lines[3]


# -- refusals: every request is answered, and the service keeps serving -----------------

MALFORMED = [
    (b"this is not xml", xmlrpc.client.NOT_WELLFORMED_ERROR, "not well-formed XML-RPC"),
    (b"<methodCall><methodName>get_insults", xmlrpc.client.NOT_WELLFORMED_ERROR, "not well"),
    (
        b"<?xml version='1.0'?><methodCall><methodName>add_insult</methodName><params>"
        b"<param><value><string>a&#1;b</string></value></param></params></methodCall>",
        xmlrpc.client.NOT_WELLFORMED_ERROR,
        "control characters",
    ),
    (
        xmlrpc.client.dumps((True,), methodresponse=True).encode(),
        xmlrpc.client.INVALID_XMLRPC,
        "not a methodCall",
    ),
]


@pytest.mark.parametrize(
    ("body", "code", "message"), MALFORMED, ids=["text", "cut", "ctl", "reply"]
)
def test_malformed_requests_get_a_fault_on_a_connection_that_keeps_serving(
    insult_settings: Settings, body, code, message
):
    connection = http_connection(insult_settings, "insult")
    response = post(connection, path_of(insult_settings, "insult"), body)
    assert response.status == 200
    fault = fault_of(response.read())
    assert fault.faultCode == code
    assert message in fault.faultString
    # Same connection, next request: answered.
    response = post(
        connection,
        path_of(insult_settings, "insult"),
        xmlrpc.client.dumps((), "random_insult").encode(),
    )
    assert xmlrpc.client.loads(response.read())[0][0]
    connection.close()


@pytest.mark.parametrize("method", ["no_such_op", "_store", "methods", "system.listMethods"])
def test_unknown_and_internal_methods_are_refused(insult_settings: Settings, method):
    service = proxy_of(insult_settings, "insult")
    with pytest.raises(xmlrpc.client.Fault, match=re.escape(repr(method))) as raised:
        getattr(service, method)()
    assert raised.value.faultCode == xmlrpc.client.METHOD_NOT_FOUND
    assert "add_insult" in raised.value.faultString, "the fault lists the methods there are"
    assert service.random_insult()


INSULT_REFUSALS = [
    ("add_insult", (42,), "insult must be a string, got int"),
    ("add_insult", ("",), "insult is empty"),
    ("add_insult", ("x" * 65,), "over the limit of 64"),
    ("add_insult", (None,), "insult must be a string, got NoneType"),
    ("add_insult", (), "add_insult: missing a required argument: 'insult'"),
    ("add_insult", ("a", "b"), "add_insult: too many positional arguments"),
    ("random_insult", ("x",), "too many positional arguments"),
    ("subscribe", ("not a url",), "must look like http://host:port/path"),
    ("subscribe", ("ftp://127.0.0.1:21/",), "must look like http://"),
    ("subscribe", ("http://127.0.0.1/no-port",), "must look like http://"),
    ("subscribe", ("http://127.0.0.1:99999/",), "must look like http://"),
    ("subscribe", (5,), "subscriber url must be"),
    ("unsubscribe", (None,), "subscriber url must be"),
]


@pytest.mark.parametrize(("method", "args", "message"), INSULT_REFUSALS)
def test_insult_service_refuses_bad_calls_and_keeps_serving(
    insult_settings: Settings, method, args, message
):
    service = proxy_of(insult_settings, "insult")
    with pytest.raises(xmlrpc.client.Fault, match=re.escape(message)) as raised:
        getattr(service, method)(*args)
    assert raised.value.faultCode == xmlrpc.client.INVALID_METHOD_PARAMS
    assert adds_a_new_insult(service)


FILTER_REFUSALS = [
    ("submit", ("",), "text is empty"),
    ("submit", (b"bytes",), "text must be a string, got bytes"),
    ("submit", (None,), "text must be a string, got NoneType"),
    ("submit_many", ("one text",), "texts must be a list"),
    ("submit_many", (["fine", 3],), "texts[1]: text must be a string"),
    ("result", (7,), "task id must be a non-empty string"),
    ("wait_results", ("not a list", 1), "task_ids must be a list"),
    ("wait_results", ([7], 1), "task id must be a non-empty string"),
    ("wait_results", (["some-id"], -1), "timeout must be between"),
    ("wait_results", (["some-id"], "soon"), "timeout must be a number"),
    ("filter", ("text", 3600), "timeout must be between"),
    ("get_results", (-1,), "limit must be between"),
    ("get_results", ("5",), "limit must be an integer"),
    ("worker_register", ("", SECRET), "worker id must be a non-empty string"),
    ("worker_exchange", ("w", SECRET, "not a dict", 1, 0), "results must be a dict"),
    ("worker_exchange", ("w", SECRET, {}, 0, 0), "max_tasks must be an integer"),
    ("worker_leave", ("w", SECRET), "missing a required argument: 'results'"),
]


@pytest.mark.parametrize(("method", "args", "message"), FILTER_REFUSALS)
def test_filter_refuses_bad_calls_and_keeps_serving(
    filter_settings: Settings, method, args, message
):
    front = proxy_of(filter_settings, "filter")
    with pytest.raises(xmlrpc.client.Fault, match=re.escape(message)) as raised:
        getattr(front, method)(*with_secret(args))
    assert raised.value.faultCode == xmlrpc.client.INVALID_METHOD_PARAMS
    assert front.filter("still feo") == "still CENSORED"


def test_a_filter_that_gets_no_result_in_time_names_its_task(front_only, settings):
    # No worker runs: the wait ends with the timeout fault, and the task stays queued.
    with pytest.raises(
        xmlrpc.client.Fault, match=r"task (\S+) got no result within 0.2 s"
    ) as raised:
        front_only.filter("nobody censors me", 0.2)
    assert raised.value.faultCode == -32000
    task_id = re.search(r"task (\S+) got", raised.value.faultString).group(1)
    secret = os.environ[SECRET_ENV]
    front_only.worker_register("late", secret)
    leased = front_only.worker_exchange("late", secret, {}, 10, 1)
    assert leased == [[task_id, "nobody censors me"]]


# -- HTTP: refusals before XML-RPC, connections, keep-alive ------------------------------


def test_http_requests_that_are_not_xmlrpc_calls_are_refused_clearly(deploy: Deploy, settings):
    deploy("echo")
    path = path_of(settings, "echo")
    call = xmlrpc.client.dumps(("hi",), "echo").encode()

    connection = http_connection(settings, "echo")
    response = post(connection, "/another-namespace/echo", call)
    assert response.status == 404
    assert f"this port serves {path}" in response.read().decode()

    connection = http_connection(settings, "echo")
    connection.request("GET", path)
    assert connection.getresponse().status == 501

    connection = http_connection(settings, "echo")
    connection.putrequest("POST", path)
    connection.endheaders()  # no Content-Length
    response = connection.getresponse()
    assert response.status == 411
    assert "Content-Length" in response.read().decode()

    connection = http_connection(settings, "echo")
    connection.putrequest("POST", path)
    connection.putheader("Content-Length", str(10**9))
    connection.endheaders()  # announces 1 GB, sends none of it: refused before reading
    assert connection.getresponse().status == 413

    assert proxy_of(settings, "echo").echo("still there") == "still there"


def test_garbage_and_silent_connections_do_not_stall_the_service(deploy: Deploy, settings):
    deploy("echo")
    address = (settings.host, settings.echo_port)
    silent = socket.create_connection(address, timeout=5)  # connects, never speaks
    with socket.create_connection(address, timeout=5) as rude:
        rude.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        answer = b""
        while chunk := rude.recv(1000):  # until the server hangs up
            answer += chunk
        # Not even a request line: the stdlib answers as HTTP/0.9 would, with the page only.
        assert b"400 - Bad request" in answer
    assert proxy_of(settings, "echo").echo("still there") == "still there"
    silent.close()


def test_a_client_that_hangs_up_before_its_answer_is_dropped_quietly(deploy: Deploy, settings):
    deployment = deploy("filter")
    gone: set[int] = set()
    for _ in range(3):
        connection = http_connection(settings, "filter")
        # A call that blocks for a second; the client is gone before the answer.
        connection.request(
            "POST",
            path_of(settings, "filter"),
            xmlrpc.client.dumps((["nope"], 1), "wait_results").encode(),
        )
        gone.add(connection.sock.getsockname()[1])
        connection.close()

    def server_let_go() -> bool:
        """No process of the deployment holds a connection to a client that hung up."""
        return not any(
            c.raddr and c.raddr.port in gone
            for pid in deployment.worker_pids()
            for c in psutil.Process(pid).net_connections("tcp")
        )

    # The server ends the blocked calls and closes their sockets: wait for that.
    assert wait_for(server_let_go, 15)
    front = proxy_of(settings, "filter")
    assert front.filter("still feo") == "still CENSORED"
    assert "Traceback" not in deployment.log_tail(200)


def test_one_kept_alive_connection_carries_many_calls(deploy: Deploy, settings):
    deploy("echo")
    connection = http_connection(settings, "echo")
    connection.connect()
    sock = connection.sock
    for n in range(20):
        response = post(
            connection, path_of(settings, "echo"), xmlrpc.client.dumps((n,), "echo").encode()
        )
        assert response.version == 11
        assert response.getheader("Connection", "") != "close"
        assert response.getheader("Content-Encoding") is None
        assert xmlrpc.client.loads(response.read())[0] == (n,)
    assert connection.sock is sock, "no call opened a new connection"
    connection.close()


def test_a_new_connection_replaces_an_idle_one_and_gets_503_only_if_all_run_calls():
    release = threading.Event()
    running: list[int] = []

    def block() -> bool:
        running.append(1)
        return release.wait(10)

    methods = {"echo": lambda payload: payload, "block": block}
    server = RpcServer("127.0.0.1", 0, "/t/echo", methods, 2)
    server.start()
    address = ("127.0.0.1", server.port)
    call = xmlrpc.client.dumps(("hi",), "echo").encode()
    try:
        silent = socket.create_connection(address, timeout=10)
        kept = http.client.HTTPConnection(*address, timeout=10)
        assert xmlrpc.client.loads(post(kept, "/t/echo", call).read())[0] == ("hi",)
        # Full of idle connections: a new one takes the place of the longest idle.
        extra = http.client.HTTPConnection(*address, timeout=10)
        assert xmlrpc.client.loads(post(extra, "/t/echo", call).read())[0] == ("hi",)
        assert silent.recv(1000) == b"", "the longest idle was closed"
        # Both places running a call: only now is a new connection refused.
        url = f"http://127.0.0.1:{server.port}/t/echo"
        callers = [
            threading.Thread(target=xmlrpc.client.ServerProxy(url, _TimeoutTransport()).block)
            for _ in range(2)
        ]
        for caller in callers:
            caller.start()
        assert wait_for(lambda: len(running) == 2, 5)
        with socket.create_connection(address, timeout=10) as refused:
            answer = b""
            while chunk := refused.recv(1000):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 503") and b"running calls" in answer
        release.set()
        for caller in callers:
            caller.join(10)
        again = http.client.HTTPConnection(*address, timeout=10)
        assert post(again, "/t/echo", call).status == 200
        silent.close()
    finally:
        release.set()
        server.stop()


def test_replies_never_contain_nil(front_only, settings):
    connection = http_connection(settings, "filter")
    secret = os.environ[SECRET_ENV]
    for method, args in [
        ("worker_register", ("w", secret)),
        ("worker_heartbeat", ("w", secret)),
        ("worker_leave", ("w", secret, {})),
    ]:
        body = post(
            connection, path_of(settings, "filter"), xmlrpc.client.dumps(args, method).encode()
        ).read()
        assert b"<nil/>" not in body
        xmlrpc.client.loads(body)  # and it is a normal reply, not a fault


def test_carriage_returns_survive_the_round_trip(deploy: Deploy, backend, settings):
    deploy("echo")
    deploy("filter")
    # As the document says: sent as &#13;, a carriage return comes back as one.
    body = xmlrpc.client.dumps(("a\r\nb\r",), "echo").replace("\r", "&#13;").encode()
    response = post(http_connection(settings, "echo"), path_of(settings, "echo"), body)
    reply = response.read()
    assert b"&#13;" in reply
    assert xmlrpc.client.loads(reply)[0] == ("a\r\nb\r",)
    # And this project's clients do it for you.
    with backend.filter_client(settings) as client:
        assert client.filter("line one\r\nfeo\r") == "line one\r\nCENSORED\r"


# -- subscribers -------------------------------------------------------------------------


class PlainSubscriber:
    """A subscriber exactly as the document describes one: a stock XML-RPC server."""

    def __init__(self, host: str) -> None:
        self.received: list[str] = []
        self.server = SimpleXMLRPCServer((host, 0), logRequests=False)
        self.server.register_function(self.notify, "notify")
        self.url = f"http://{host}:{self.server.server_address[1]}/RPC2"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def notify(self, insult: str) -> bool:
        self.received.append(insult)
        return True

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_stock_xmlrpc_server_subscribes_and_receives_broadcasts(deploy: Deploy, settings):
    deploy("insult", broadcast_interval=0.2)
    service = proxy_of(settings, "insult")
    subscriber = PlainSubscriber(settings.host)
    try:
        assert service.subscribe(subscriber.url) is True
        assert service.subscribe(subscriber.url) is False
        assert wait_for(lambda: len(subscriber.received) >= 3, 5)
        assert set(subscriber.received) <= set(service.get_insults())
        assert service.unsubscribe(subscriber.url) is True
        assert service.unsubscribe(subscriber.url) is False
    finally:
        subscriber.stop()


def test_a_dead_subscriber_is_dropped_after_three_failures(deploy: Deploy, settings):
    deploy("insult", broadcast_interval=0.2)
    service = proxy_of(settings, "insult")
    dead = f"http://{settings.host}:{free_port()}/nobody-listens"
    live = PlainSubscriber(settings.host)
    try:
        assert service.subscribe(dead) is True
        assert service.subscribe(live.url) is True
        # Eight rounds reached the live one; the dead one failed each of them.
        assert wait_for(lambda: len(live.received) >= 8, 5), "the dead one blocks nobody"
        assert service.subscribe(dead) is True, "it was dropped, so it is new again"
        assert service.unsubscribe(dead) is True
    finally:
        live.stop()


# -- errors a user sees --------------------------------------------------------------------


def test_a_client_of_another_namespace_is_told_it_reached_the_wrong_service(
    deploy: Deploy, settings
):
    deploy("insult")
    elsewhere = settings.with_changes(namespace=settings.namespace + "-other")
    with pytest.raises(BrokerUnavailable, match="another service answers there"):
        get_backend("xmlrpc").insult_client(elsewhere).random_insult()


def test_a_missing_service_is_one_clear_error(settings):
    with pytest.raises(BrokerUnavailable, match=r"serve xmlrpc insult") as raised:
        get_backend("xmlrpc").insult_client(settings)
    assert f":{settings.insult_port}/" in raised.value.url


def test_a_second_service_on_a_taken_port_is_one_line_and_exit_1(deploy: Deploy, settings):
    deploy("insult")
    second = second_insult_service("xmlrpc", settings)
    assert second.returncode == 1
    assert "cannot listen on" in second.stderr and "--insult-port" in second.stderr
    assert "Traceback" not in second.stderr
    assert proxy_of(settings, "insult").random_insult()


def test_sigterm_stops_the_launcher_front_and_workers_cleanly(backend, settings):
    command = [sys.executable, "-m", "middlewares", "serve", "xmlrpc", "filter", "--workers", "2"]
    launcher = subprocess.Popen(
        [*command, *settings.to_args()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        client = None
        deadline = time.monotonic() + 30
        while client is None:
            try:
                client = backend.filter_client(settings)
                assert client.filter("ready?", timeout=2) == "ready?"
            except MiddlewareError:
                assert time.monotonic() < deadline, "the filter never answered"
                if client is not None:
                    client.close()
                client = None
                time.sleep(0.1)
        # Work in flight when the signal comes: the workers hand in what they hold.
        client.submit_many([f"text {n} feo" for n in range(2000)])
        client.close()
        children = psutil.Process(launcher.pid).children()
        assert len(children) == 3, "a front and two workers"
        launcher.send_signal(signal.SIGTERM)
        _, errors = launcher.communicate(timeout=30)
        assert launcher.returncode == 0
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, "no process is left behind"
        assert "Traceback" not in errors
        assert "ignored SIGTERM" not in errors and "did not leave" not in errors
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)


# -- the worker protocol, with the test playing the workers ------------------------------


@pytest.fixture
def front_only(settings: Settings, monkeypatch) -> Iterator[xmlrpc.client.ServerProxy]:
    """A filter front with no worker."""
    # The test plays the workers: it gives the front a deployment secret of its own.
    monkeypatch.setenv(SECRET_ENV, secrets.token_urlsafe())
    specs = get_backend("xmlrpc").processes("filter", settings, workers=1)
    supervisor = Supervisor([s for s in specs if "filter_worker" not in s.module])
    supervisor.start()
    try:
        front = proxy_of(settings, "filter")
        deadline = time.monotonic() + 30
        while True:
            try:
                front.get_results(1)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the front never listened"
                time.sleep(0.1)
        yield front
    finally:
        supervisor.stop()


def test_worker_protocol_requeues_a_restarted_workers_tasks(front_only):
    check_a_restarted_workers_tasks_are_requeued(front_only, os.environ[SECRET_ENV])


def test_worker_protocol_requeues_the_tasks_of_a_silent_worker(front_only):
    check_a_silent_workers_tasks_are_requeued(front_only, os.environ[SECRET_ENV])


# -- the n-node form ---------------------------------------------------------------------


def test_the_master_lists_nodes_that_serve_one_shared_store(deploy: Deploy, settings):
    deploy("insult", nodes=2, load_defaults=False)
    master = proxy_of(settings, "insult")
    urls = master.nodes()
    assert len(set(urls)) == 2
    assert all(url.endswith(path_of(settings, "insult")) for url in urls)
    first, second = (xmlrpc.client.ServerProxy(url, _TimeoutTransport()) for url in urls)
    assert first.add_insult("Zoquete") is True
    assert second.add_insult("zoquete") is False, "one store, whichever node is called"
    assert second.get_insults() == ["zoquete"]
    with pytest.raises(xmlrpc.client.Fault) as refused:
        master.random_insult()
    assert refused.value.faultCode == xmlrpc.client.METHOD_NOT_FOUND
    assert "call nodes()" in refused.value.faultString


def test_a_node_registers_heartbeats_and_deregisters_with_the_node_protocol(
    deploy: Deploy, settings
):
    deploy("insult", nodes=1)
    master = proxy_of(settings, "insult")
    stand_in = PlainSubscriber(settings.host)  # any XML-RPC server can be a node's URL
    secret = user_secret()  # the launcher's, as an operator of this user finds it
    try:
        assert master.register("stand-in", secret, stand_in.url) == pytest.approx(1.0)
        assert stand_in.url in master.nodes()
        assert master.heartbeat("stand-in", secret) is True
        assert master.deregister("stand-in", secret) is True
        assert stand_in.url not in master.nodes()
        unknown = master.heartbeat("stand-in", secret)
        assert unknown is False, "unknown now: it must register again"
        with pytest.raises(xmlrpc.client.Fault) as refused:
            master.register("bad", secret, "ftp://somewhere/else")
        assert refused.value.faultCode == xmlrpc.client.INVALID_METHOD_PARAMS
        assert "http://host:port/path" in refused.value.faultString
        master.register("silent", secret, stand_in.url)
        # "silent" never heartbeats: three heartbeat intervals later it is not listed.
        assert wait_for(lambda: stand_in.url not in master.nodes(), 10)
    finally:
        stand_in.stop()


def test_a_leaving_node_answers_what_it_accepted_and_refuses_the_rest_unrun():
    gate = RequestGate()
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def slow() -> str:
        started.set()
        release.wait(10)
        return "answered"

    def fast() -> str:
        ran.append("fast")
        return "fast"

    server = RpcServer("127.0.0.1", 0, "/t/insult", {"slow": slow, "fast": fast}, gate=gate)
    server.start()
    try:
        accepted: list[str] = []
        caller = threading.Thread(
            target=lambda: accepted.append(
                xmlrpc.client.ServerProxy(server.address, _TimeoutTransport()).slow()
            )
        )
        caller.start()
        assert started.wait(10)
        closing = threading.Thread(target=gate.close, args=[10])
        closing.start()
        late = xmlrpc.client.ServerProxy(server.address, _TimeoutTransport())

        def refused() -> bool:
            try:
                late.fast()
            except xmlrpc.client.Fault as fault:
                return fault.faultCode == NODE_LEAVING
            return False

        assert wait_for(refused, 5)
        count = len(ran)
        # This project's client reads the refusal as "node unavailable": it retries elsewhere.
        with pytest.raises(BrokerUnavailable, match="leaving"):
            Remote(server.address, "gone", 10).call("fast")
        assert len(ran) == count, "a refused call does not run"
        release.set()
        caller.join(10)
        closing.join(10)
        assert accepted == ["answered"]
        server.leave(10)
        with pytest.raises(OSError):
            late.fast()
    finally:
        release.set()
        server.stop()
