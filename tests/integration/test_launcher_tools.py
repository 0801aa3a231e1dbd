"""Issue 13: ``serve`` cleans up after itself, and ``clean``, ``check``, ``call`` and
``watch`` of ``python -m middlewares``, run as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from middlewares.contract import MiddlewareError
from middlewares.launch.deployment import probe
from middlewares.registry import get_backend
from middlewares.settings import Settings
from tests.helpers import FAIL_FAST, ROOT, free_port, keys_of, new_namespace, one_error_line

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def middlewares(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``python -m middlewares <args>``."""
    return subprocess.run(
        [sys.executable, "-m", "middlewares", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=ENV, check=False,
    )  # fmt: skip


@contextmanager
def serving(
    middleware: str, service: str, settings: Settings, *flags: str
) -> Iterator[subprocess.Popen[str]]:
    """``serve`` as a user starts it, ready to answer; stopped with Ctrl-C (SIGINT) at
    the end unless the test stopped it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "middlewares", "serve", middleware, service, *flags,
         *settings.to_args()],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=ENV,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                probe(get_backend(middleware), service, settings.with_changes(timeout=2.0))
                break
            except (MiddlewareError, OSError):
                assert time.monotonic() < deadline, f"{middleware} {service} never answered"
                time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    """Ctrl-C, then the exit status and what the launcher printed."""
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    return process.returncode, output


@pytest.fixture
def settings() -> Iterator[Settings]:
    """A fresh namespace and free ports; whatever is left is cleaned at the end."""
    settings = Settings.from_env().with_changes(
        namespace=new_namespace(),
        insult_port=free_port(),
        filter_port=free_port(),
        echo_port=free_port(),
        pyro_ns_port=free_port(),
        broadcast_interval=0.3,
    )
    yield settings
    for name in ("redis", "rabbitmq"):
        get_backend(name).cleanup(settings)


def where(settings: Settings) -> list[str]:
    """The flags that point a tool at ``settings``' namespace and servers."""
    return [
        "--namespace", settings.namespace, "--insult-port", str(settings.insult_port),
        "--filter-port", str(settings.filter_port), "--echo-port", str(settings.echo_port),
        "--pyro-ns-port", str(settings.pyro_ns_port),
    ]  # fmt: skip


def test_serve_removes_its_keys_on_a_clean_stop_and_keep_keeps_them(settings: Settings):
    with serving("redis", "filter", settings) as process:
        called = middlewares("call", "redis", "filter", "eres tonto", *where(settings))
        assert called.stdout.strip() == "eres CENSORED"
        assert keys_of(settings.namespace)
        status, output = stop(process)
    assert status == 0
    assert "removed" in output
    assert keys_of(settings.namespace) == []
    with serving("redis", "filter", settings, "--keep") as process:
        middlewares("call", "redis", "filter", "eres tonto", *where(settings))
        assert stop(process)[0] == 0
    assert keys_of(settings.namespace), "--keep must keep the namespace's keys"
    cleaned = middlewares("clean", *where(settings))
    assert cleaned.returncode == 0, cleaned.stderr
    assert "redis     removed" in cleaned.stdout
    assert keys_of(settings.namespace) == []
    again = middlewares("clean", *where(settings))
    assert "redis     nothing to remove" in again.stdout


def test_serve_on_rabbitmq_deletes_its_queues_and_leaves_other_services(settings: Settings):
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    other = f"{settings.namespace}:insults:store"
    client.sadd(other, "kept")
    try:
        with serving("rabbitmq", "filter", settings) as process:
            middlewares("call", "rabbitmq", "submit", "eres tonto", *where(settings))
            status, output = stop(process)
        assert status == 0 and f"{settings.namespace}.filter.tasks" in output
        assert client.exists(other), "a filter's stop must not delete the InsultService's store"
        cleaned = middlewares("clean", *where(settings))
        assert "filter" not in cleaned.stdout, "the filter's queues went when it stopped"
        assert not client.exists(other), "clean deletes every service's objects"
    finally:
        client.close()


def test_call_prints_the_answer_and_refuses_bad_arguments(settings: Settings):
    with serving("xmlrpc", "insult", settings):
        added = middlewares("call", "xmlrpc", "add_insult", "Cabezota", *where(settings))
        assert added.returncode == 0 and added.stdout.strip() == "True"
        listed = middlewares("call", "xmlrpc", "get_insults", *where(settings))
        assert "cabezota" in listed.stdout.splitlines()
        refused = middlewares("call", "xmlrpc", "add_insult", "x" * 200, *where(settings))
        assert refused.returncode == 1 and "error" in refused.stderr
    line = one_error_line(middlewares("call", "xmlrpc", "add_insult", *where(settings)))
    assert "add_insult takes TEXT" in line


def test_check_finds_the_servers_that_run(settings: Settings):
    with serving("xmlrpc", "echo", settings):
        result = middlewares("check", *where(settings))
    assert result.returncode == 0, result.stderr
    xmlrpc = next(line for line in result.stdout.splitlines() if line.startswith("xmlrpc"))
    assert "echo: answers" in xmlrpc and "insult: nothing at" in xmlrpc


def test_watch_prints_broadcasts_and_stops_after_count_or_ctrl_c(settings: Settings):
    with serving("redis", "insult", settings):
        counted = middlewares("watch", "redis", "--count", "2", *where(settings))
        assert counted.returncode == 0, counted.stderr
        assert len(counted.stdout.splitlines()) == 2
        watcher = subprocess.Popen(
            [sys.executable, "-m", "middlewares", "watch", "redis", *where(settings)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV,
        )  # fmt: skip
        assert watcher.stdout is not None
        # A watcher that never prints must not hang the test: kill it after a while.
        guard = threading.Timer(30, watcher.kill)
        guard.start()
        try:
            first = watcher.stdout.readline()  # a broadcast arrived: it is subscribed
            watcher.send_signal(signal.SIGINT)
            watcher.communicate(timeout=FAIL_FAST)
        finally:
            guard.cancel()
    assert first.strip()
    assert watcher.returncode == 130
