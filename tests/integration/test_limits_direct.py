"""Hostile local clients of the XML-RPC and Pyro4 services, as an attacker meets them:
idle and half-sent connections, malformed or oversized requests, compressed and
keep-serialized Pyro4 messages, forged worker results, hijacked names, and subscribers
that hang. Each is refused or outlived, and the service keeps serving everyone else.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import socket
import time
import xmlrpc.client
import zlib
from collections.abc import Iterator

import psutil
import Pyro4
import Pyro4.errors
import Pyro4.message
import Pyro4.util
import pytest

from middlewares.launch.deployment import Deployment
from middlewares.registry import get_backend
from middlewares.settings import Settings
from tests.helpers import SharedDeployments, require, wait_for

#: Idle (or half-sent) connections an attacker opens; more than a server keeps (512).
IDLE_CONNECTIONS = 600

#: Connections a server holds at least once it is full (it keeps 512, one may be ours).
HELD = 500

#: How soon a new client must be served despite them.
SERVED_WITHIN_S = 1.0

SERPENT = Pyro4.util.get_serializer("serpent")


@pytest.fixture
def xmlrpc_echo(shared_deploy: SharedDeployments) -> Deployment:
    """The module's one XML-RPC echo service, which the hostile clients share."""
    return shared_deploy("xmlrpc", "echo")


@pytest.fixture
def pyro_echo(shared_deploy: SharedDeployments) -> Deployment:
    """The module's one Pyro4 echo service (and name server), which the hostile clients share."""
    return shared_deploy("pyro", "echo")


def xmlrpc_proxy(url: str) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(url, transport=_Transport(), allow_none=True)


class _Transport(xmlrpc.client.Transport):
    def make_connection(self, host: str) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = 10
        return connection


def pyro_proxy(settings: Settings, name: str) -> Pyro4.Proxy:
    ns = Pyro4.locateNS(settings.host, settings.pyro_ns_port)
    proxy = Pyro4.Proxy(ns.lookup(f"{settings.namespace}.{name}"))
    proxy._pyroTimeout = 10
    return proxy


@contextlib.contextmanager
def idle_connections(pid: int, address: tuple[str, int], half_sent: bytes) -> Iterator[None]:
    """:data:`IDLE_CONNECTIONS` connections to the server ``pid`` at ``address``, every
    other one having sent ``half_sent`` (the start of a request) and nothing more.

    Opened in batches the server accepts before the next (past its listen backlog a
    busy machine would stall the connects for seconds), until it holds all it keeps.
    """
    connections: list[socket.socket] = []
    try:
        while len(connections) < IDLE_CONNECTIONS:
            for _ in range(50):
                connection = socket.create_connection(address, timeout=30)
                if len(connections) % 2:
                    connection.sendall(half_sent)
                connections.append(connection)
            held = min(len(connections), HELD)
            assert wait_for(lambda held=held: accepted_by(pid, address[1]) >= held, 10)
        yield
    finally:
        for connection in connections:
            connection.close()


def accepted_by(pid: int, port: int) -> int:
    """Connections the process ``pid`` holds open on its port ``port``."""
    return sum(
        1
        for c in psutil.Process(pid).net_connections("tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def server_pid(deployment: Deployment, module: str) -> int:
    for pid in deployment.worker_pids():
        if any(arg.endswith(module) for arg in psutil.Process(pid).cmdline()):
            return pid
    raise AssertionError(f"no process runs {module}")


def served_within(call, seconds: float) -> float:
    """How long ``call()`` took; it must succeed within ``seconds``."""
    started = time.monotonic()
    call()
    took = time.monotonic() - started
    assert took < seconds, f"a new client waited {took:.2f} s"
    return took


# -- connections -------------------------------------------------------------------------


def test_idle_and_half_sent_connections_do_not_lock_out_xmlrpc_clients(xmlrpc_echo):
    settings = xmlrpc_echo.settings
    pid = server_pid(xmlrpc_echo, "echo_service")
    url = f"http://{settings.host}:{settings.echo_port}/{settings.namespace}/echo"
    half = b"POST /x HTTP/1.1\r\nContent-Le"
    with idle_connections(pid, (settings.host, settings.echo_port), half):
        served_within(lambda: xmlrpc_proxy(url).echo("new client"), SERVED_WITHIN_S)
        with get_backend("xmlrpc").echo_client(settings) as client:
            assert client.echo("and ours") == "and ours"


def test_idle_and_half_sent_connections_do_not_lock_out_a_pyro_daemon(pyro_echo):
    settings = pyro_echo.settings
    uri = pyro_proxy(settings, "echo")._pyroUri
    daemon = server_pid(pyro_echo, "echo_service")
    with idle_connections(daemon, (uri.host, uri.port), b"PYRO\x00\x30"):  # 6 of 24 bytes
        served_within(lambda: _fresh_proxy(uri).echo("new client"), SERVED_WITHIN_S)


def test_idle_and_half_sent_connections_do_not_lock_out_the_name_server(pyro_echo):
    settings = pyro_echo.settings
    name_server = server_pid(pyro_echo, "name_server")
    address = (settings.host, settings.pyro_ns_port)
    with idle_connections(name_server, address, b"PYRO\x00\x30"):
        served_within(lambda: pyro_proxy(settings, "echo"), SERVED_WITHIN_S)


def _fresh_proxy(uri: Pyro4.URI) -> Pyro4.Proxy:
    proxy = Pyro4.Proxy(uri)
    proxy._pyroTimeout = 10
    return proxy


def test_a_content_length_that_is_not_ascii_digits_gets_400(xmlrpc_echo):
    settings = xmlrpc_echo.settings
    for bad in (b"\xb2", b"12a", b"-1", b"\xd9\xa3"):  # superscript two, Arabic three
        with socket.create_connection((settings.host, settings.echo_port), timeout=10) as raw:
            raw.sendall(
                b"POST /" + settings.namespace.encode() + b"/echo HTTP/1.1\r\n"
                b"Content-Length: " + bad + b"\r\n\r\n"
            )
            answer = b""
            while chunk := raw.recv(1000):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400"), (bad, answer[:80])
        assert b"Content-Length must be a number" in answer
    url = f"http://{settings.host}:{settings.echo_port}/{settings.namespace}/echo"
    assert xmlrpc_proxy(url).echo("still there") == "still there"


def test_a_body_over_the_limit_is_refused_before_it_is_read(xmlrpc_echo):
    settings = xmlrpc_echo.settings
    connection = http.client.HTTPConnection(settings.host, settings.echo_port, timeout=10)
    connection.putrequest("POST", f"/{settings.namespace}/echo")
    connection.putheader("Content-Length", str(5 * 1024 * 1024))
    connection.endheaders()  # announces 5 MiB, sends none of it
    response = connection.getresponse()
    assert response.status == 413
    assert "limited to 4194304 bytes" in response.read().decode()


# -- Pyro4 messages ----------------------------------------------------------------------


def test_a_compressed_pyro_message_is_refused(pyro_echo, monkeypatch):
    settings = pyro_echo.settings
    monkeypatch.setattr(Pyro4.config, "COMPRESSION", True)
    squeezed = pyro_proxy(settings, "echo")
    with pytest.raises(Pyro4.errors.ProtocolError, match="compressed messages are refused"):
        squeezed.echo("x" * 100_000)  # long enough for Pyro4 to compress it
    monkeypatch.setattr(Pyro4.config, "COMPRESSION", False)
    assert pyro_proxy(settings, "echo").echo("still there") == "still there"


def test_a_zlib_bomb_is_refused_without_being_inflated(pyro_echo):
    settings = pyro_echo.settings
    daemon = psutil.Process(server_pid(pyro_echo, "echo_service"))
    before = daemon.memory_info().rss
    bomb = zlib.compressobj(9)
    zeros = b"\0" * (1 << 20)
    data = b"".join(bomb.compress(zeros) for _ in range(500)) + bomb.flush()  # 500 MB inflated
    assert len(data) < 1 << 20
    reply = _raw_invoke(settings, data, Pyro4.message.FLAGS_COMPRESSED)
    assert "compressed messages are refused" in str(reply)
    assert daemon.memory_info().rss - before < 50 * 1024 * 1024
    assert pyro_proxy(settings, "echo").echo("still there") == "still there"


def test_a_keep_serialized_pyro_message_is_refused(pyro_echo):
    settings = pyro_echo.settings
    # This flag would make Pyro4's daemon marshal.loads the BLBI annotation.
    import marshal

    blob = marshal.dumps(("info", f"{settings.namespace}.echo", "echo"))
    reply = _raw_invoke(
        settings, b"", Pyro4.message.FLAGS_KEEPSERIALIZED, annotations={"BLBI": blob}
    )
    assert "flags 0x40 are refused" in str(reply)
    assert pyro_proxy(settings, "echo").echo("still there") == "still there"


def _raw_invoke(
    settings: Settings, data: bytes, flags: int, annotations: dict[str, bytes] | None = None
) -> object:
    """Send one raw MSG_INVOKE on a handshaken connection; the deserialized reply."""
    echo = pyro_proxy(settings, "echo")
    echo._pyroBind()
    message = Pyro4.message.Message(
        Pyro4.message.MSG_INVOKE, data, SERPENT.serializer_id, flags, 91, annotations
    )
    echo._pyroConnection.send(message.to_bytes())
    reply = Pyro4.message.Message.recv(echo._pyroConnection, [Pyro4.message.MSG_RESULT])
    assert reply.flags & Pyro4.message.FLAGS_EXCEPTION and reply.seq == 91
    return SERPENT.deserializeData(reply.data)


# -- the worker and node protocol, and names ---------------------------------------------


@pytest.mark.parametrize("middleware", ["xmlrpc", "pyro"])
def test_forged_results_are_refused(settings, middleware):
    backend = get_backend(middleware)
    require(backend, settings)
    with Deployment(middleware, "filter", settings, workers=1, nodes=None) as deployment:
        front = _front(middleware, settings)
        ids = front.submit_many([f"text {n} tonto" for n in range(2000)])
        assert len(set(ids)) == 2000
        assert all(len(task_id) >= 22 for task_id in ids), "128 random bits each"
        forged = {task_id: "FORGED" for task_id in ids}
        refusals = 0
        for guess in ("", "secret", "insultbench", None):
            for call in (
                lambda g=guess: front.worker_register("evil", g),
                lambda g=guess: front.worker_exchange("evil", g, forged, 64, 0),
                lambda g=guess: front.worker_leave("evil", g, forged),
            ):
                with pytest.raises((xmlrpc.client.Fault, PermissionError)) as refused:
                    call()
                assert "deployment secret" in str(refused.value)
                refusals += 1
        assert refusals == 12
        done: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while len(done) < len(ids) and time.monotonic() < deadline:
            done.update(front.wait_results([i for i in ids if i not in done], 1))
        assert "FORGED" not in done.values()
        assert sorted(done.values()) == sorted(f"text {n} CENSORED" for n in range(2000))
        assert "Traceback" not in deployment.log_tail(200)
    backend.cleanup(settings)


def _front(middleware: str, settings: Settings):
    if middleware == "xmlrpc":
        return xmlrpc_proxy(
            f"http://{settings.host}:{settings.filter_port}/{settings.namespace}/filter"
        )
    return pyro_proxy(settings, "insult.filter")


def test_a_pyro_name_cannot_be_hijacked_or_removed(settings):
    require(get_backend("pyro"), settings)
    with Deployment("pyro", "filter", settings):
        name = f"{settings.namespace}.insult.filter"
        ns = Pyro4.locateNS(settings.host, settings.pyro_ns_port)
        real = ns.lookup(name)
        with pytest.raises(Pyro4.errors.NamingError, match="holding its secret"):
            ns.register(name, "PYRO:evil@127.0.0.1:1")
        with pytest.raises(Pyro4.errors.NamingError, match="holding its secret"):
            ns.remove(name)
        with pytest.raises(Pyro4.errors.NamingError, match="holding its secret"):
            ns.remove(prefix=settings.namespace)
        assert ns.lookup(name) == real
        assert pyro_proxy(settings, "insult.filter").filter("tonto") == "CENSORED"
    get_backend("pyro").cleanup(settings)


@pytest.mark.parametrize("middleware", ["xmlrpc", "pyro"])
def test_the_master_refuses_nodes_without_the_secret(settings, middleware):
    backend = get_backend(middleware)
    require(backend, settings)
    with Deployment(middleware, "insult", settings, nodes=1):
        if middleware == "xmlrpc":
            master = xmlrpc_proxy(
                f"http://{settings.host}:{settings.insult_port}/{settings.namespace}/insult"
            )
            rogue = "http://127.0.0.1:1/rogue"
        else:
            master = pyro_proxy(settings, "insult.master")
            rogue = "PYRO:rogue@127.0.0.1:1"
        nodes = master.nodes()
        for call in (
            lambda: master.register("rogue", "guess", rogue),
            lambda: master.heartbeat("rogue", "guess"),
            lambda: master.deregister("1", "guess"),
        ):
            with pytest.raises((xmlrpc.client.Fault, PermissionError), match="secret"):
                call()
        assert master.nodes() == nodes
        assert rogue not in master.nodes()
    backend.cleanup(settings)


# -- broadcasts --------------------------------------------------------------------------

INTERVAL = 1.0


@pytest.mark.parametrize("middleware", ["xmlrpc", "pyro"])
def test_hung_subscribers_never_delay_a_healthy_one_and_are_dropped(settings, middleware):
    backend = get_backend(middleware)
    require(backend, settings)
    hung = socket.create_server((settings.host, 0), backlog=64)  # accepts, never answers
    port = hung.getsockname()[1]
    received: list[float] = []
    with (
        Deployment(middleware, "insult", settings.with_changes(broadcast_interval=INTERVAL)) as d,
        backend.insult_client(settings) as healthy,
    ):
        healthy.subscribe(lambda insult: received.append(time.monotonic()))
        assert wait_for(lambda: len(received) >= 1, 5 * INTERVAL), "a first broadcast"
        service = (
            xmlrpc_proxy(
                f"http://{settings.host}:{settings.insult_port}/{settings.namespace}/insult"
            )
            if middleware == "xmlrpc"
            else pyro_proxy(settings, "insult.service")
        )
        for n in range(40):
            address = (
                f"http://127.0.0.1:{port}/hung/{n}"
                if middleware == "xmlrpc"
                else f"PYRO:hung{n}@127.0.0.1:{port}"
            )
            assert service.subscribe(address) is True
        hung_since = time.monotonic()
        start = len(received)
        assert wait_for(lambda: d.log_tail(400).count("dropped subscriber") >= 40, 10)
        dropped_in = time.monotonic() - hung_since
        assert wait_for(lambda: len(received) >= start + 6, 10 * INTERVAL)
    hung.close()
    gaps = [later - earlier for earlier, later in itertools.pairwise(received[start - 1 :])]
    assert max(gaps) < 1.8 * INTERVAL, f"a broadcast was missed: gaps {gaps}"
    # Three failed broadcasts, the first within an interval of subscribing.
    assert dropped_in < 4 * INTERVAL + 1, dropped_in
    backend.cleanup(settings)
