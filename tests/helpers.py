"""Helpers shared by the test modules (fixtures live in the conftest.py files).

Test modules import these from here, never from a conftest: a conftest is pytest's to
load, and importing it as a module loads it a second time under another name.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from middlewares.contract import Backend, BrokerUnavailable
from middlewares.launch.deployment import Deployment
from middlewares.registry import get_backend
from middlewares.secret import user_secret
from middlewares.settings import Settings

#: What the ``deploy`` fixture returns: ``deploy("filter", workers=2, **changes)``.
Deploy = Callable[..., Deployment]

#: Stands for the deployment secret (known once a deployment runs) in tables of calls.
SECRET = "<the deployment secret>"

#: The environment a synthetic study file records (report tests; nothing is measured).
SYNTHETIC_ENVIRONMENT = {
    "python": "3.11.7",
    "implementation": "CPython",
    "platform": "Linux",
    "cpu_model": "test CPU",
    "cpu_count": 2,
    "memory_gb": 4.0,
    "load_average": [0.1, 0.1, 0.1],
    "libraries": {"redis": "5.0"},
    "redis_server": "7.0.15",
    "rabbitmq_server": "3.10.8",
    "git": {"commit": "0123456789abcdef", "dirty": False},
}

#: The repository, where ``python -m`` finds the packages.
ROOT = Path(__file__).resolve().parents[1]
PROTOCOL_DOC = ROOT / "docs" / "PROTOCOL.md"
#: Nothing listens there: a Redis that is down.
DEAD_REDIS = "redis://127.0.0.1:6399/0"
#: How long a failing command may take, start-up included.
FAIL_FAST = 10.0


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


def with_secret(args: tuple[object, ...]) -> list[object]:
    """``args`` with the deployment secret where :data:`SECRET` stands."""
    return [user_secret() if arg == SECRET else arg for arg in args]


def adds_a_new_insult(service: Any) -> bool:
    """True when ``service`` (a client or a raw proxy of an InsultService) accepts an
    insult never seen before and lists it: the check that it still serves after a
    refusal, safe to repeat on a deployment the tests of a module share."""
    insult = f"after refusing {uuid.uuid4().hex[:8]}"
    return service.add_insult(insult) is True and insult in service.get_insults()


def protocol_section(title: str) -> str:
    """One middleware's section of docs/PROTOCOL.md, from ``## <title>`` to the next ``## ``."""
    text = PROTOCOL_DOC.read_text("utf-8")
    section = text.split(f"\n## {title}\n", 1)[1]
    return section.split("\n## ", 1)[0]


#: Every namespace this test process handed out, for :func:`delete_leftover_keys`.
NAMESPACES_GIVEN: list[str] = []


def new_namespace() -> str:
    """A namespace no other test or run uses."""
    namespace = f"ibtest-{uuid.uuid4().hex[:10]}"
    NAMESPACES_GIVEN.append(namespace)
    return namespace


def delete_leftover_keys() -> int:
    """Delete the Redis keys still held under the namespaces this process handed out
    (and those derived from them, ``<namespace>-…``); returns how many went. A test
    that stops a deployment without its backend's clean-up leaves no trace this way."""
    client = redis.Redis.from_url(Settings.from_env().redis_url, socket_timeout=5)
    deleted = 0
    try:
        for namespace in NAMESPACES_GIVEN:
            keys = list(client.scan_iter(match=f"{namespace}*", count=500))
            if keys:
                deleted += client.delete(*keys)
    except redis.RedisError:
        return deleted
    finally:
        client.close()
    return deleted


def fresh_settings(namespace: str | None = None, **changes: object) -> Settings:
    """Settings with a namespace of their own, free ports and a short timeout for tests."""
    defaults: dict[str, object] = {
        "namespace": namespace or new_namespace(),
        "insult_port": free_port(),
        "filter_port": free_port(),
        "echo_port": free_port(),
        "pyro_ns_port": free_port(),
        "timeout": 10.0,
    }
    return Settings.from_env().with_changes(**(defaults | changes))


class SharedDeployments:
    """Deployments started once and reused by every test of a module that asks for them.

    ``shared(middleware, service, workers=1, nodes=None, **changes)`` starts the first
    time a combination is asked for, in a namespace and on ports of its own, and returns
    the running deployment (its settings are ``deployment.settings``) every later time.
    Checks that send one bad input each use one deployment between them: a deployment
    costs seconds to start, a bad input milliseconds, and each check still asserts that
    the service answered it and serves the next request.
    """

    def __init__(self) -> None:
        self._running: dict[tuple[object, ...], Deployment] = {}

    def __call__(
        self,
        middleware: str,
        service: str,
        workers: int = 1,
        nodes: int | None = None,
        **changes: object,
    ) -> Deployment:
        key = (middleware, service, workers, nodes, tuple(sorted(changes.items())))
        if key not in self._running:
            settings = fresh_settings(**changes)
            require(get_backend(middleware), settings)
            deployment = Deployment(middleware, service, settings, workers, nodes=nodes)
            deployment.start()
            self._running[key] = deployment
        return self._running[key]

    def stop_all(self) -> None:
        """Stop every deployment and delete what each left in its namespace."""
        for deployment in reversed(list(self._running.values())):
            deployment.stop()
            get_backend(deployment.middleware).cleanup(deployment.settings)
        self._running.clear()


# --- commands run as a user runs them ---------------------------------------------


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


def second_insult_service(middleware: str, settings: Settings) -> subprocess.CompletedProcess[str]:
    """Start ``middleware``'s one-node InsultService once more with ``settings``, as a
    user would by mistake next to a running one, and return how it ended."""
    return run(f"middlewares.{middleware}.insult_service", *settings.to_args(), timeout=60)


def each_in_turn(middleware: str, settings: Settings) -> Iterator[str]:
    """The body of a fixture over middlewares: skip (or fail under CI) when its broker is
    missing, yield its name, and clean its namespace up afterwards."""
    backend = get_backend(middleware)
    require(backend, settings)
    yield middleware
    backend.cleanup(settings)
