"""The one message step every queue consumer runs (middlewares.messages), without a broker:
the shape check that refuses deep or huge bodies before parsing, the rule that every
exception becomes a refusal, and the log that holds back a flood of bad messages.
Each middleware's services, sent the same poison for real, are in
tests/integration/test_poison.py.
"""

from __future__ import annotations

import json
import logging

import pytest

from middlewares.core import Limits
from middlewares.messages import BoundedLog, check_shape, classify, handle_message


def test_the_shape_check_refuses_deep_or_huge_bodies_and_lets_brackets_in_texts_pass():
    limits = Limits()
    for body in (b"[" * 100_000, b'{"a":' + b"[" * 17 + b"]" * 17 + b"}"):
        with pytest.raises(ValueError, match="nests deeper than 16"):
            check_shape(body, limits)
    with pytest.raises(ValueError, match="over the limit"):
        check_shape(b" " * (limits.max_message_bytes + 1), limits)
    text = json.dumps({"id": "t", "text": "[[[{{{" * 1000 + '\\"[[['}).encode()
    check_shape(text, limits)


def test_every_exception_becomes_a_refusal_and_none_escapes():
    def act(body: bytes, message: dict) -> str:
        raise {"type": TypeError("unhashable"), "deep": RecursionError(), "big": MemoryError()}[
            message["op"]
        ]

    def refuse(body: bytes, message: dict | None, error: str) -> str:
        return error

    limits = Limits()
    assert handle_message(b'{"op": "type"}', limits, act, refuse).startswith("internal error")
    assert "nested too deeply" in handle_message(b'{"op": "deep"}', limits, act, refuse)
    assert "too large" in handle_message(b'{"op": "big"}', limits, act, refuse)
    assert "nests deeper" in handle_message(b"[" * 100_000, limits, act, refuse)
    assert classify(ValueError("x" * 1000)).message.endswith("…")


def test_the_bounded_log_holds_back_a_flood_and_says_how_much(caplog):
    bounded = BoundedLog(logging.getLogger("ibtest.bounded"), burst=3, window=60.0)
    with caplog.at_level(logging.WARNING, logger="ibtest.bounded"):
        for n in range(100):
            bounded.warning("bad message %d", n)
    assert len(caplog.records) == 3
