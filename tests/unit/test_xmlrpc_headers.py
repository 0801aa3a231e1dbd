"""The XML-RPC server's own reading of request lines and headers (middlewares/xmlrpc/handler.py):
what http.server accepts it accepts, and what is wrong gets an HTTP error, never a
dead connection thread or a traceback."""

from __future__ import annotations

import socket
import xmlrpc.client
from collections.abc import Iterator

import pytest

from middlewares.xmlrpc.handler import Headers
from middlewares.xmlrpc.transport import RpcServer

PATH = "/ns/echo"


@pytest.fixture
def server() -> Iterator[RpcServer]:
    """An XML-RPC server of one method, ``echo``, on a free port."""
    served = RpcServer("127.0.0.1", 0, PATH, {"echo": lambda text: text})
    served.start()
    yield served
    served.stop()


def _exchange(server: RpcServer, raw: bytes) -> bytes:
    """Send ``raw`` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(raw)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def _call(text: str, version: bytes = b"HTTP/1.1", extra: bytes = b"") -> bytes:
    body = xmlrpc.client.dumps((text,), "echo").encode()
    return (
        b"POST " + PATH.encode() + b" " + version + b"\r\nContent-Type: text/xml\r\n"
        b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n"
        + extra
        + b"Connection: close\r\n\r\n"
        + body
    )


def test_headers_are_found_whatever_their_case():
    headers = Headers({"content-length": "12"})
    assert headers.get("Content-Length") == "12"
    assert "CONTENT-LENGTH" in headers
    assert headers["content-type"] is None
    assert headers.get("Expect", "") == ""


def test_a_call_over_http_1_0_and_1_1_is_answered_with_date_and_length(server):
    for version in (b"HTTP/1.0", b"HTTP/1.1"):
        answer = _exchange(server, _call("hola", version))
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK"), answer[:80]
        assert b"\r\nDate: " in head
        assert f"Content-Length: {len(body)}".encode() in head
        assert xmlrpc.client.loads(body)[0] == ("hola",)


def test_folded_headers_and_expect_100_continue_are_understood(server):
    folded = b"X-Long: part one\r\n  part two\r\nExpect: 100-continue\r\n"
    answer = _exchange(server, _call("plegado", extra=folded))
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"), answer[:80]
    assert b"plegado" in answer


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        (b"no colon here\r\n", b"400"),
        (b": no name\r\n", b"400"),
        (b"X-Big: " + b"x" * 70000 + b"\r\n", b"431"),
        (b"".join(b"X-%d: v\r\n" % n for n in range(120)), b"431"),
    ],
    ids=["no-colon", "no-name", "long-line", "too-many"],
)
def test_malformed_headers_get_an_http_error_and_the_server_goes_on(server, extra, status):
    answer = _exchange(server, _call("mal", extra=extra))
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:80]
    assert b"mal" not in answer.partition(b"\r\n\r\n")[2].split(b"Error code")[0]
    assert b"still" in _exchange(server, _call("still"))


def test_unusual_request_lines_get_the_standard_library_answers(server):
    # The standard library answers these as HTTP/0.9 would: the error page only.
    assert b"505" in _exchange(server, b"POST " + PATH.encode() + b" HTTP/2.0\r\n\r\n")
    assert b"400" in _exchange(server, b"garbage without a version at all here\r\n\r\n")
