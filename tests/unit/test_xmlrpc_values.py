"""Reading XML-RPC messages (middlewares.xmlrpc.values): the same values and the same
errors as ``xmlrpc.client.loads``, for the usual types and for everything else."""

from __future__ import annotations

import xmlrpc.client

import pytest

from middlewares.xmlrpc.values import loads

VALUES = [
    "plain",
    "",
    "a\r\nb <&> ñ 😀",
    0,
    -(2**31),
    2**31 - 1,
    1.5,
    True,
    False,
    [],
    ["a", 1, [2.5, {"k": "v"}]],
    {},
    {"done": {"id1": "CENSORED"}, "unknown": ["id2"]},
    {"": "empty key", "n": [True, {"deep": [[[]]]}]},
]


def encoded(text: str) -> bytes:
    """As this project writes messages: a carriage return as a reference (a raw one would
    be read as a newline by any XML parser)."""
    return text.replace("\r", "&#13;").encode()


def standard(data: bytes) -> object:
    return xmlrpc.client.loads(data, use_builtin_types=True)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_replies_and_calls_read_as_the_standard_library_reads_them(value):
    reply = encoded(xmlrpc.client.dumps((value,), methodresponse=True))
    call = encoded(xmlrpc.client.dumps((value, "x", None), "method", allow_none=True))
    assert loads(reply) == standard(reply) == ((value,), None)
    assert loads(call) == standard(call) == ((value, "x", None), "method")


@pytest.mark.parametrize(
    "data",
    [
        # Other types and shapes, read by the standard library.
        b"<?xml version='1.0'?><methodResponse><params><param><value>"
        b"<base64>aGk=</base64></value></param></params></methodResponse>",
        b"<methodResponse><params><param><value><dateTime.iso8601>20261130T12:00:00"
        b"</dateTime.iso8601></value></param></params></methodResponse>",
        b"<methodResponse><params><param><value><ex:i8 xmlns:ex='x'>5</ex:i8></value>"
        b"</param></params></methodResponse>",
        b"<methodCall><params><param><value>no name</value></param></params></methodCall>",
        b"<methodResponse><params><param><value>\n  <string>pretty</string>\n</value>"
        b"</param></params></methodResponse>",
        b"<methodCall><methodName>m</methodName><params><param><value><array><data>"
        + b"<value><array><data>" * 200
        + b"</data></array></value>" * 200
        + b"</data></array></value></param></params></methodCall>",
        # Messages the standard library refuses.
        b"not xml",
        b"<methodResponse><params><param><value><int>five</int></value></param></params>"
        b"</methodResponse>",
        b"<methodResponse><params><param><value><boolean>2</boolean></value></param>"
        b"</params></methodResponse>",
        b"<methodResponse></methodResponse>",
    ],
)
def test_other_types_shapes_and_errors_are_the_standard_librarys(data):
    try:
        expected = standard(data)
    except Exception as error:
        with pytest.raises(type(error)):
            loads(data)
    else:
        assert loads(data) == expected


def test_a_fault_is_raised_as_the_standard_librarys():
    data = xmlrpc.client.dumps(xmlrpc.client.Fault(-32602, "bad"), methodresponse=True).encode()
    with pytest.raises(xmlrpc.client.Fault) as caught:
        loads(data)
    assert (caught.value.faultCode, caught.value.faultString) == (-32602, "bad")
