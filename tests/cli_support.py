"""What the command-line tests share: running ``python -m`` as a user does, and
asserting a failure is one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import redis

from middlewares.settings import Settings

#: The repository, where ``python -m`` finds the packages.
ROOT = Path(__file__).resolve().parents[1]
#: Nothing listens there: a Redis that is down.
DEAD_REDIS = "redis://127.0.0.1:6399/0"
#: How long a failing command may take, start-up included.
FAIL_FAST = 10.0


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_namespace() -> str:
    """A namespace no other test or run uses."""
    return f"ibnew-{uuid.uuid4().hex[:10]}"


def run(
    *args: str, timeout: float = FAIL_FAST, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m <args>`` from the repository (or ``cwd``), as a user runs it."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
        env=environment,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str], status: int = 2) -> str:
    """Assert the command failed with ``status`` and one line on stderr; return it."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == status, result.stderr + result.stdout
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "error" in lines[0]
    return lines[0]


def keys_of(namespace: str) -> list[bytes]:
    """The Redis keys of ``namespace``."""
    client = redis.Redis.from_url(Settings.from_env().redis_url, socket_timeout=5)
    try:
        return list(client.scan_iter(match=f"{namespace}:*"))
    finally:
        client.close()
