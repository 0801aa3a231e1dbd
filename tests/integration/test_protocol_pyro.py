"""The Pyro4 wire protocol of docs/PROTOCOL.md (Pyro4), spoken with plain Pyro4 proxies.

Nothing here uses this project's clients: each test talks to the services as a program
written from the protocol document alone would, and checks that bad or unanswerable
messages are refused or dropped while the service keeps serving.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator

import psutil
import Pyro4
import Pyro4.errors
import Pyro4.message
import Pyro4.util
import pytest

from middlewares.contract import BrokerUnavailable
from middlewares.launch.deployment import Deployment
from middlewares.launch.processes import Supervisor
from middlewares.registry import get_backend
from middlewares.secret import SECRET_ENV, user_secret
from middlewares.settings import Settings
from tests.helpers import (
    SECRET,
    Deploy,
    SharedDeployments,
    adds_a_new_insult,
    second_insult_service,
    wait_for,
    with_secret,
)
from tests.worker_protocol import (
    check_a_restarted_workers_tasks_are_requeued,
    check_a_silent_workers_tasks_are_requeued,
)


@pytest.fixture
def middleware(settings: Settings) -> Iterator[str]:
    """Only Pyro4 here; the namespace's names are removed afterwards."""
    yield "pyro"
    get_backend("pyro").cleanup(settings)


def name_server(settings: Settings) -> Pyro4.Proxy:
    return Pyro4.locateNS(settings.host, settings.pyro_ns_port)


def proxy_of(settings: Settings, role: str) -> Pyro4.Proxy:
    """A plain proxy of ``<ns>.<role>``, as the protocol document says to make one."""
    proxy = Pyro4.Proxy(name_server(settings).lookup(f"{settings.namespace}.{role}"))
    proxy._pyroTimeout = 10
    return proxy


def test_the_ten_line_script_adds_an_insult_and_gets_a_censored_text(deploy: Deploy, settings):
    deploy("insult")
    deploy("filter")
    ns = Pyro4.locateNS(settings.host, settings.pyro_ns_port)
    insults = Pyro4.Proxy(ns.lookup(f"{settings.namespace}.insult.service"))
    filt = Pyro4.Proxy(ns.lookup(f"{settings.namespace}.insult.filter"))
    assert insults.add_insult("Zascandil") is True
    # Filter workers re-read the insult list at most every 0.5 s.
    assert wait_for(lambda: filt.filter("eres un zascandil") == "eres un CENSORED", 3)
    task_id = filt.submit("zascandil!")
    assert wait_for(lambda: filt.result(task_id) == "CENSORED!", 5)
    assert filt.result(task_id) == "", "a result is handed out once"


INSULT_REFUSALS = [
    ("add_insult", (42,), ValueError, "insult must be a string"),
    ("add_insult", ("",), ValueError, "insult is empty"),
    ("add_insult", ("x" * 65,), ValueError, "over the limit"),
    ("add_insult", (), TypeError, "argument"),
    ("subscribe", ("not a uri",), ValueError, "not a Pyro4 URI"),
    ("subscribe", (5,), ValueError, "uri must be"),
    ("subscribe", ("PYRONAME:some.name",), ValueError, "direct PYRO: URI"),
    ("unsubscribe", (None,), ValueError, "uri must be"),
]


@pytest.mark.parametrize(("method", "args", "kind", "message"), INSULT_REFUSALS)
def test_insult_service_refuses_bad_calls_and_keeps_serving(
    insult_settings: Settings, method, args, kind, message
):
    service = proxy_of(insult_settings, "insult.service")
    with pytest.raises(kind, match=message):
        getattr(service, method)(*args)
    assert adds_a_new_insult(service)


FILTER_REFUSALS = [
    ("submit", ("",), "text is empty"),
    ("submit", (b"bytes",), "text must be a string"),
    ("submit_many", ("one text",), "texts must be a list"),
    ("submit_many", (["fine", 3],), r"texts\[1\]: text must be a string"),
    ("wait_results", ("not a list", 1), "task_ids must be a list"),
    ("wait_results", ([7], 1), "task id must be a non-empty string"),
    ("wait_results", (["some-id"], -1), "timeout must be between"),
    ("wait_results", (["some-id"], "soon"), "timeout must be a number"),
    ("filter", ("text", 3600), "timeout must be between"),
    ("get_results", (-1,), "limit must be between"),
    ("get_results", ("5",), "limit must be an integer"),
    ("worker_exchange", ("w", SECRET, "not a dict", 1, 0), "results must be a dict"),
    ("worker_exchange", ("w", SECRET, {}, 0, 0), "max_tasks must be an integer"),
]


@pytest.mark.parametrize(("method", "args", "message"), FILTER_REFUSALS)
def test_filter_refuses_bad_calls_and_keeps_serving(
    filter_settings: Settings, method, args, message
):
    front = proxy_of(filter_settings, "insult.filter")
    with pytest.raises(ValueError, match=message):
        getattr(front, method)(*with_secret(args))
    assert front.filter("still feo") == "still CENSORED"


def test_unknown_methods_are_refused(insult_settings: Settings):
    service = proxy_of(insult_settings, "insult.service")
    # Skip the proxy's own check against the object's metadata: ask the server itself.
    with pytest.raises(AttributeError, match="no_such_op"):
        service._pyroInvoke("no_such_op", (), {})
    with pytest.raises(AttributeError):
        service._pyroInvoke("_store", (), {})  # private members are never reachable
    assert service.random_insult()


@pytest.mark.parametrize("serializer", ["pickle", "marshal", "json"])
def test_only_serpent_is_accepted(insult_settings: Settings, serializer):
    uri = name_server(insult_settings).lookup(f"{insult_settings.namespace}.insult.service")
    unsafe = Pyro4.Proxy(uri)
    unsafe._pyroSerializer = serializer
    with pytest.raises(Pyro4.errors.CommunicationError, match="serializer that is not accepted"):
        unsafe._pyroBind()
    assert proxy_of(insult_settings, "insult.service").random_insult()


def test_name_server_accepts_only_serpent(deploy: Deploy, settings):
    deploy("echo")
    unsafe = Pyro4.Proxy(f"PYRO:Pyro.NameServer@{settings.host}:{settings.pyro_ns_port}")
    unsafe._pyroSerializer = "marshal"
    with pytest.raises(Pyro4.errors.CommunicationError, match="not accepted"):
        unsafe._pyroBind()


def test_a_malformed_message_is_answered_with_an_error(deploy: Deploy, settings):
    deploy("echo")
    echo = proxy_of(settings, "echo")
    echo._pyroBind()
    connection = echo._pyroConnection
    serpent_id = Pyro4.util.get_serializer("serpent").serializer_id
    garbage = Pyro4.message.Message(
        Pyro4.message.MSG_INVOKE, b"this is not serpent (", serpent_id, 0, 77
    )
    connection.send(garbage.to_bytes())
    reply = Pyro4.message.Message.recv(connection, [Pyro4.message.MSG_RESULT])
    assert reply.seq == 77
    assert reply.flags & Pyro4.message.FLAGS_EXCEPTION
    assert proxy_of(settings, "echo").echo("still there") == "still there"


def test_garbage_and_silent_connections_do_not_stall_the_service(deploy: Deploy, settings):
    deploy("echo")
    echo = proxy_of(settings, "echo")
    host, port = echo._pyroUri.host, echo._pyroUri.port
    silent = socket.create_connection((host, port), timeout=5)  # connects, never speaks
    with socket.create_connection((host, port), timeout=5) as rude:
        rude.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := rude.recv(1000):  # until the daemon hangs up
            answer += chunk
        assert b"unsupported protocol version" in answer
    assert echo.echo("still there") == "still there"
    silent.close()


def test_a_failing_oneway_call_is_dropped_and_the_service_keeps_serving(deploy: Deploy, settings):
    deploy("insult", load_defaults=False)
    service = proxy_of(settings, "insult.service")
    # A oneway call has no reply to carry an error: the service drops it.
    service._pyroInvoke("add_insult", (42,), {}, flags=Pyro4.message.FLAGS_ONEWAY)
    service._pyroInvoke("add_insult", ("oneway",), {}, flags=Pyro4.message.FLAGS_ONEWAY)
    assert wait_for(lambda: service.get_insults() == ["oneway"], 5)


@Pyro4.expose
class Subscriber:
    """A subscriber exactly as the protocol describes one: an object with notify(insult)."""

    def __init__(self) -> None:
        self.received: list[str] = []

    def notify(self, insult: str) -> None:
        self.received.append(insult)


@contextlib.contextmanager
def subscribed_object(settings: Settings) -> Iterator[tuple[Subscriber, str]]:
    """A plain Pyro4 object served by a daemon of the test's own, and its URI."""
    subscriber = Subscriber()
    daemon = Pyro4.Daemon(host=settings.host)
    uri = str(daemon.register(subscriber))
    threading.Thread(target=daemon.requestLoop, daemon=True).start()
    try:
        yield subscriber, uri
    finally:
        daemon.shutdown()


def test_a_plain_pyro_object_subscribes_and_receives_broadcasts(deploy: Deploy, settings):
    deploy("insult", broadcast_interval=0.2)
    service = proxy_of(settings, "insult.service")
    with subscribed_object(settings) as (subscriber, uri):
        assert service.subscribe(uri) is True
        assert service.subscribe(uri) is False
        assert wait_for(lambda: len(subscriber.received) >= 2, 5)
        assert set(subscriber.received) <= set(service.get_insults())
        assert service.unsubscribe(uri) is True
        assert service.unsubscribe(uri) is False


def test_names_are_registered_under_the_namespace_and_cleaned_up(deploy: Deploy, settings):
    deploy("insult")
    deploy("filter")
    deploy("echo")
    prefix = f"{settings.namespace}."
    names = set(name_server(settings).list(prefix=prefix))
    assert names == {prefix + "insult.service", prefix + "insult.filter", prefix + "echo"}
    get_backend("pyro").cleanup(settings)
    assert name_server(settings).list(prefix=prefix) == {}


def test_a_second_service_refuses_a_name_held_by_a_live_one(deploy: Deploy, settings):
    deploy("insult")
    second = second_insult_service("pyro", settings)
    assert second.returncode == 1
    assert "already served" in second.stderr and "Traceback" not in second.stderr
    assert proxy_of(settings, "insult.service").random_insult()


def test_two_launchers_started_at_once_share_one_name_server(settings):
    """Both find no name server and start one; the second stands by instead of failing,
    takes over when the first stops, and its services register again there."""
    insult, filt = Deployment("pyro", "insult", settings), Deployment("pyro", "filter", settings)
    starters = [threading.Thread(target=d.start) for d in (insult, filt)]
    try:
        for starter in starters:
            starter.start()
        for starter in starters:
            starter.join()
        assert proxy_of(settings, "insult.service").random_insult()
        assert proxy_of(settings, "insult.filter").filter("feo") == "CENSORED"
        insult.stop()  # maybe the launcher whose name server served: the other takes over
        assert wait_for(lambda: _filters(settings), 15), filt.log_tail()
    finally:
        filt.stop()
        insult.stop()


def _filters(settings: Settings) -> bool:
    try:
        return proxy_of(settings, "insult.filter").filter("tonto") == "CENSORED"
    except Pyro4.errors.PyroError:
        return False


@pytest.mark.slow
def test_a_worker_killed_in_the_middle_of_a_batch_loses_nothing(deploy: Deploy, settings):
    # 2 ms of work per task: the kill surely lands while the worker holds a leased batch.
    deployment = deploy("filter", workers=2, work_ms=2.0)
    texts = [f"task {n} tonto" for n in range(2000)]
    front = proxy_of(settings, "insult.filter")
    ids = front.submit_many(texts)
    worker = next(p for p in deployment.worker_pids() if "filter_worker" in " ".join(_cmdline(p)))
    # Once the first results are in, both workers hold leased batches.
    done: dict[str, str] = front.wait_results(ids, 10)
    assert 0 < len(done) < len(ids) / 2
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while len(done) < len(ids) and time.monotonic() < deadline:
        done.update(front.wait_results([i for i in ids if i not in done], 1))
    assert [done.get(i) for i in ids] == [f"task {n} CENSORED" for n in range(2000)]
    assert "re-queuing its" in deployment.log_tail(200)


def _cmdline(pid: int) -> list[str]:
    return psutil.Process(pid).cmdline()


def test_a_missing_name_server_is_one_clear_error(settings):
    with pytest.raises(BrokerUnavailable, match=r"Pyro\.NameServer.*start it"):
        get_backend("pyro").insult_client(settings)


@pytest.fixture
def front_only(settings: Settings, monkeypatch) -> Iterator[Pyro4.Proxy]:
    """A name server and a filter front with no worker: the test plays the workers."""
    # The test plays the workers: it gives the front a deployment secret of its own.
    monkeypatch.setenv(SECRET_ENV, secrets.token_urlsafe())
    specs = get_backend("pyro").processes("filter", settings, workers=1)
    supervisor = Supervisor([s for s in specs if "filter_worker" not in s.module])
    supervisor.start()
    try:
        front = None
        deadline = time.monotonic() + 30
        while front is None:
            try:
                front = proxy_of(settings, "insult.filter")
            except (Pyro4.errors.NamingError, Pyro4.errors.CommunicationError):
                assert time.monotonic() < deadline, "the front never registered"
                time.sleep(0.1)
        yield front
    finally:
        supervisor.stop()


def test_worker_protocol_requeues_a_restarted_workers_tasks(front_only: Pyro4.Proxy):
    check_a_restarted_workers_tasks_are_requeued(front_only, os.environ[SECRET_ENV])


def test_worker_protocol_requeues_the_tasks_of_a_silent_worker(front_only: Pyro4.Proxy):
    check_a_silent_workers_tasks_are_requeued(front_only, os.environ[SECRET_ENV])


def plain_proxy(uri: str) -> Pyro4.Proxy:
    proxy = Pyro4.Proxy(uri)
    proxy._pyroTimeout = 10
    return proxy


def test_the_master_lists_nodes_that_each_speak_the_insult_protocol(deploy: Deploy, settings):
    deploy("insult", nodes=2, load_defaults=False, broadcast_interval=0.3)
    master = proxy_of(settings, "insult.master")
    first, second = (plain_proxy(uri) for uri in master.nodes())
    assert first._pyroUri != second._pyroUri
    assert first.add_insult("Zopenco") is True
    assert second.add_insult("zopenco") is False, "one store behind every node"
    assert second.get_insults() == ["zopenco"]
    # Subscribed through one node, unsubscribed through the other: one subscriber list.
    with subscribed_object(settings) as (subscriber, uri):
        assert first.subscribe(uri) is True
        assert second.subscribe(uri) is False
        assert wait_for(lambda: len(subscriber.received) >= 2, 5)
        assert set(subscriber.received) == {"zopenco"}
        assert second.unsubscribe(uri) is True
        assert first.unsubscribe(uri) is False


MASTER_REFUSALS = [
    ("register", ("", SECRET, "PYRO:obj@127.0.0.1:1"), "node id must be a non-empty string"),
    ("register", (7, SECRET, "PYRO:obj@127.0.0.1:1"), "node id must be a non-empty string"),
    ("register", ("n", SECRET, "PYRONAME:some.name"), "node uri must be a direct PYRO: URI"),
    ("register", ("n", SECRET, 42), "node uri must be a PYRO: URI string"),
    ("heartbeat", (None, SECRET), "node id must be a non-empty string"),
    ("deregister", ("x" * 101, SECRET), "node id must be a non-empty string"),
]


@pytest.mark.parametrize(("method", "args", "message"), MASTER_REFUSALS)
def test_the_master_refuses_bad_calls_and_keeps_serving(
    shared_deploy: SharedDeployments, method, args, message
):
    master = proxy_of(shared_deploy("pyro", "insult", nodes=1).settings, "insult.master")
    with pytest.raises(ValueError, match=message):
        getattr(master, method)(*with_secret(args))
    assert len(master.nodes()) == 1


def test_the_master_drops_a_node_silent_for_three_heartbeats(deploy: Deploy, settings):
    deploy("insult", nodes=1)
    master = proxy_of(settings, "insult.master")
    fake = "PYRO:fake.node@127.0.0.1:1"
    secret = user_secret()  # the launcher's, as an operator of this user finds it
    assert master.register("fake-node", secret, fake) == pytest.approx(1.0)
    assert fake in master.nodes()
    assert master.heartbeat("fake-node", secret) is True
    registered_at = time.monotonic()
    assert wait_for(lambda: fake not in master.nodes(), 10)
    assert time.monotonic() - registered_at >= 2.5, "dropped after three missed heartbeats"
    assert master.heartbeat("fake-node", secret) is False, "it must register again"
    master.register("leaving-node", secret, fake)
    assert master.deregister("leaving-node", secret) is True
    assert fake not in master.nodes()
    assert len(master.nodes()) == 1, "the real node heartbeats and stays"
