"""Helpers shared by the test modules (fixtures live in the conftest.py files).

Test modules import these from here, never from a conftest: a conftest is pytest's to
load, and importing it as a module loads it a second time under another name.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from middlewares.contract import Backend, BrokerUnavailable
from middlewares.launch.deployment import Deployment
from middlewares.settings import Settings

#: What the ``deploy`` fixture returns: ``deploy("filter", workers=2, **changes)``.
Deploy = Callable[..., Deployment]

PROTOCOL_DOC = Path(__file__).resolve().parents[1] / "docs" / "PROTOCOL.md"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require(backend: Backend, settings: Settings) -> None:
    """Skip (or, under CI, fail) when the backend's broker is unreachable."""
    try:
        backend.check(settings)
    except BrokerUnavailable as error:
        if os.environ.get("CI"):
            pytest.fail(f"broker missing under CI: {error}")
        pytest.skip(str(error))


def wait_for(condition: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def protocol_section(title: str) -> str:
    """One middleware's section of docs/PROTOCOL.md, from ``## <title>`` to the next ``## ``."""
    text = PROTOCOL_DOC.read_text("utf-8")
    section = text.split(f"\n## {title}\n", 1)[1]
    return section.split("\n## ", 1)[0]
