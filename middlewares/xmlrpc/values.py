"""Reading XML-RPC messages: the common ones with ElementTree, anything else with the
standard library.

``xmlrpc.client.loads`` walks a message with a Python callback per element; building the
tree in C and reading it here takes well under half the time for the lists and structs
the filter and ``get_insults`` carry (a profile of the filter worker showed two fifths of
its time in ``loads``). Only the usual types are read here (string, int, double,
boolean, array, struct, nil); a message with anything else (base64, dateTime, a
namespace) or anything malformed is read by ``xmlrpc.client.loads``, so every value and
every error is the standard library's.
"""

from __future__ import annotations

import xmlrpc.client
from typing import Any
from xml.etree.ElementTree import Element, fromstring


class _Unusual(Exception):
    """Not read here: the standard library reads it."""


def loads(data: bytes) -> tuple[tuple[Any, ...], str | None]:
    """The parameters and method name of a request, or the one-value tuple of a reply
    (its method name None); raises :class:`xmlrpc.client.Fault` for a fault reply, and
    what ``xmlrpc.client.loads`` raises for a message it cannot read."""
    try:
        return _read(fromstring(data))
    except xmlrpc.client.Fault:
        raise
    except Exception:
        return xmlrpc.client.loads(data, use_builtin_types=True)


def _read(root: Element) -> tuple[tuple[Any, ...], str | None]:
    method = None
    params: tuple[Any, ...] | None = None
    for part in root:
        if part.tag == "methodName" and root.tag == "methodCall" and len(part) == 0:
            method = part.text or ""
        elif part.tag == "params" and params is None:
            params = tuple(_value(_only(param, "param")) for param in part)
        elif part.tag == "fault" and root.tag == "methodResponse":
            raise xmlrpc.client.Fault(**_value(_only(part, "fault")))
        else:
            raise _Unusual(part.tag)
    # A call with its name, or a reply with its params; anything else is the library's.
    if root.tag == "methodCall" and method is not None:
        return params or (), method
    if root.tag == "methodResponse" and params is not None:
        return params, None
    raise _Unusual(root.tag)


def _only(element: Element, tag: str) -> Element:
    """The one <value> inside ``element`` (a <param> or <fault>)."""
    if element.tag != tag or len(element) != 1 or element[0].tag != "value":
        raise _Unusual(tag)
    return element[0]


def _value(value: Element) -> Any:
    if len(value) == 0:
        return value.text or ""  # a <value> with no type is a string
    if len(value) > 1:
        raise _Unusual("value")
    typed = value[0]
    tag = typed.tag
    if tag == "string":
        if len(typed):
            raise _Unusual(tag)
        return typed.text or ""
    if tag == "array":
        if len(typed) != 1 or typed[0].tag != "data":
            raise _Unusual(tag)
        return [_value(_tagged(item, "value")) for item in typed[0]]
    if tag == "struct":
        members = {}
        for member in typed:
            if member.tag != "member" or len(member) != 2 or member[0].tag != "name":
                raise _Unusual(tag)
            members[member[0].text or ""] = _value(_tagged(member[1], "value"))
        return members
    if len(typed) or (typed.text is None and tag != "nil"):
        raise _Unusual(tag)
    if tag in ("int", "i4", "i8"):
        return int(typed.text)  # type: ignore[arg-type]
    if tag == "double":
        return float(typed.text)  # type: ignore[arg-type]
    if tag == "boolean" and typed.text in ("0", "1"):
        return typed.text == "1"
    if tag == "nil":
        return None
    raise _Unusual(tag)


def _tagged(element: Element, tag: str) -> Element:
    if element.tag != tag:
        raise _Unusual(element.tag)
    return element
