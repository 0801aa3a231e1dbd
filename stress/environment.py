"""The machine and software a study ran on, recorded next to its results.

Broker versions are read from the brokers themselves (Redis ``INFO server``, RabbitMQ's
connection properties), so the report names what actually ran, not what was meant to.
Every probe has a short timeout and reports "unavailable: <reason>" instead of failing.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pika
import psutil
import redis
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from middlewares.settings import Settings

PROBE_TIMEOUT_S = 3.0
LIBRARIES = (
    "Pyro4",
    "serpent",
    "redis",
    "pika",
    "hdrhistogram",
    "psutil",
    "pandas",
    "matplotlib",
    "tqdm",
)
_REPO = Path(__file__).resolve().parent.parent


def collect_environment(settings: Settings) -> dict[str, Any]:
    """Python, libraries, brokers, CPU, memory and git commit, as a JSON-ready dict."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "libraries": {name: _version(name) for name in LIBRARIES},
        "redis_server": redis_version(settings.redis_url),
        "rabbitmq_server": rabbitmq_version(settings.amqp_url),
        "git": git_state(),
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def redis_version(url: str) -> str:
    """The version Redis reports in ``INFO server``."""
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=PROBE_TIMEOUT_S, socket_connect_timeout=PROBE_TIMEOUT_S
        )
        try:
            return str(client.info("server")["redis_version"])
        finally:
            client.close()
    except (redis.RedisError, OSError, KeyError) as error:
        return f"unavailable: {error}"


def rabbitmq_version(url: str) -> str:
    """The version RabbitMQ announces when a connection opens."""
    parameters = pika.URLParameters(url)
    parameters.socket_timeout = PROBE_TIMEOUT_S
    parameters.blocked_connection_timeout = PROBE_TIMEOUT_S
    parameters.connection_attempts = 1
    parameters.stack_timeout = PROBE_TIMEOUT_S
    try:
        connection = pika.BlockingConnection(parameters)
    # A port that accepts TCP but never speaks AMQP raises a connector error, not AMQPError.
    except (pika.exceptions.AMQPError, AMQPConnectorException, OSError) as error:
        return f"unavailable: {type(error).__name__} {error}"
    try:
        # pika keeps the broker's Connection.Start properties on the underlying connection.
        properties = connection._impl.server_properties or {}
        version = properties.get("version", b"unknown")
        return version.decode() if isinstance(version, bytes) else str(version)
    finally:
        connection.close()


def git_state() -> dict[str, Any]:
    """The commit the code ran from and whether the working tree had changes."""
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError) as error:
        return {"commit": "unknown", "error": str(error)}


def _git(*args: str) -> str:
    completed = subprocess.run(
        ["git", *args],
        cwd=_REPO,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_S,
        check=True,
    )
    return completed.stdout.strip()
