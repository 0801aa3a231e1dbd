"""The XML-RPC client's own HTTP (middlewares.xmlrpc.clients.Remote), against this
project's server and against small raw servers that misbehave on purpose."""

from __future__ import annotations

import socket
import threading
import xmlrpc.client
from collections.abc import Callable, Iterator

import pytest

from middlewares.contract import BrokerUnavailable, ServiceError, ServiceTimeout
from middlewares.xmlrpc.clients import NotServing, Remote
from middlewares.xmlrpc.transport import RpcServer

REPLY_BODY = xmlrpc.client.dumps(("fine",), methodresponse=True).encode()
#: A fault whose struct is not {faultCode, faultString}.
ODD_FAULT = (
    b"<methodResponse><fault><value><struct><member><name>odd</name><value>1</value>"
    b"</member></struct></value></fault></methodResponse>"
)


@pytest.fixture
def echo_server() -> Iterator[RpcServer]:
    server = RpcServer("127.0.0.1", 0, "/echo", {"echo": lambda value: value})
    server.start()
    yield server
    server.stop()


def raw_server(answer: Callable[[socket.socket], None]) -> tuple[str, socket.socket]:
    """A server on a free port whose every connection gets ``answer`` once it has sent
    its request, then is closed; returns its URL and listening socket."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                answer(connection)

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/echo", listener


def test_texts_come_back_exactly_over_one_kept_connection(echo_server):
    remote = Remote(echo_server.address, "start it", 5)
    texts = ["a\r\nb", "ñ 😀 <&>", "", "x" * 100_000]
    assert [remote.call("echo", text) for text in texts] == texts
    assert len(echo_server.table.connections()) == 1, "one connection for every call"
    remote.close()


def test_a_connection_the_server_closed_while_idle_is_replaced_once():
    def reply(connection: socket.socket) -> None:
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(REPLY_BODY), REPLY_BODY)
        )

    url, listener = raw_server(reply)  # closes every connection after one reply
    remote = Remote(url, "start it", 5)
    try:
        assert remote.call("echo", "one") == "fine"
        assert remote.call("echo", "two") == "fine", "the closed connection was replaced"
    finally:
        remote.close()
        listener.close()


def test_a_reply_cut_short_is_an_error_and_the_call_is_not_sent_again():
    connections = []

    def one_reply_then_half_of_one(connection: socket.socket) -> None:
        connections.append(connection)
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(REPLY_BODY), REPLY_BODY)
        )
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n<methodResp")

    url, listener = raw_server(one_reply_then_half_of_one)
    remote = Remote(url, "start it", 5)
    try:
        assert remote.call("echo", "one") == "fine"
        with pytest.raises(BrokerUnavailable, match="mid-reply"):
            remote.call("echo", "two")  # on the kept connection: it may have run
        assert len(connections) == 1, "the call was not sent again on a new connection"
    finally:
        remote.close()
        listener.close()


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\n", BrokerUnavailable, "no Content-Length"),
        (b"SMTP ready\r\n\r\n", BrokerUnavailable, "not an HTTP/1.x status line"),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", NotServing, "another service"),
        (b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", ServiceError, "HTTP 500 Oops"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", ServiceError, "not XML-RPC"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(ODD_FAULT), ODD_FAULT),
            ServiceError,
            "not XML-RPC",
        ),
    ],
)
def test_a_reply_that_is_not_xml_rpc_over_http_is_a_clear_error(reply, error, message):
    url, listener = raw_server(lambda connection: connection.sendall(reply))
    try:
        with pytest.raises(error, match=message):
            Remote(url, "start it", 5).call("echo", "x")
    finally:
        listener.close()


def test_no_server_and_a_silent_server_are_told_apart():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        free = probe.getsockname()[1]
    with pytest.raises(NotServing, match="start it"):
        Remote(f"http://127.0.0.1:{free}/echo", "start it", 5).call("echo", "x")
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/echo"
        with pytest.raises(ServiceTimeout, match=r"no answer within 0\.3 s"):
            Remote(url, "start it", 0.2).call("echo", "x", wait=0.1)
    finally:
        silent.close()
