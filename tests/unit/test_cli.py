"""The launcher as a user meets it: help, bad flags and missing brokers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import free_port


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <args>`` and capture what it prints."""
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("command", [(), ("brokers",)])
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    result = run("middlewares", *command, "--help")
    assert result.returncode == 0
    assert "usage:" in result.stdout


def test_serve_help_lists_middlewares_services_and_settings() -> None:
    result = run("middlewares", "serve", "--help")
    assert result.returncode == 0
    for word in (
        "xmlrpc",
        "pyro",
        "redis",
        "rabbitmq",
        "insult",
        "filter",
        "--namespace",
        "--broadcast-interval",
        "--redis-url",
        "--amqp-url",
        "--port",
        "--host",
    ):
        assert word in result.stdout


@pytest.mark.parametrize(
    ("middleware", "flag", "url"),
    [
        ("redis", "--redis-url", "redis://127.0.0.1:{port}/0"),
        ("rabbitmq", "--amqp-url", "amqp://guest:secret@127.0.0.1:{port}/%2F"),
    ],
)
def test_unreachable_broker_gives_one_line_and_exit_2(middleware: str, flag: str, url: str) -> None:
    url = url.format(port=free_port())
    result = run("middlewares", "serve", middleware, "insult", flag, url)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert url.replace("secret", "***") in lines[0]
    assert "start it" in lines[0]
    assert "secret" not in result.stderr, "passwords are never printed"


def test_bad_flags_are_refused_with_a_message() -> None:
    result = run("middlewares", "serve", "redis", "filter", "--workers", "0")
    assert result.returncode == 2
    assert "--workers must be at least 1" in result.stderr
    result = run("middlewares", "serve", "redis", "filter", "--namespace", "two words")
    assert result.returncode == 2
    assert "namespace" in result.stderr and "Traceback" not in result.stderr
