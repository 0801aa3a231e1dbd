"""Make Redis and RabbitMQ reachable: ``python -m middlewares brokers up|status|down``.

``up`` tries, for each broker, in order: use it if it already answers; start the
installed server binary; start it with Docker Compose when a Docker engine runs; install
it with apt when running as root; otherwise print exactly what to run. ``down`` stops
only what ``up`` started, as recorded in a state file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from middlewares.hints import compose_answers
from middlewares.runtime import EXIT_USAGE
from middlewares.settings import Settings

STATE_FILE = Path(".insultbench-brokers.json")
START_TIMEOUT = 90.0


@dataclass(frozen=True)
class Broker:
    """How to find, start, install and stop one broker."""

    name: str
    url: str
    apt_package: str
    compose_service: str
    start_command: Callable[[], list[str]]
    stop_command: list[str]
    answers: Callable[[], bool]

    @property
    def port(self) -> int:
        """The TCP port from the broker's URL."""
        parsed = urlparse(self.url)
        return parsed.port or {"redis": 6379, "amqp": 5672}[parsed.scheme]

    @property
    def display_url(self) -> str:
        """The URL with any password masked, for messages."""
        parsed = urlparse(self.url)
        if parsed.password:
            return self.url.replace(f":{parsed.password}@", ":***@")
        return self.url


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def _rabbitmq_answers(url: str) -> bool:
    import pika

    from middlewares.rabbitmq.transport import CONNECT_ERRORS

    parameters = pika.URLParameters(url)
    parameters.socket_timeout = 2
    parameters.stack_timeout = 2
    parameters.blocked_connection_timeout = 2
    parameters.connection_attempts = 1
    try:
        pika.BlockingConnection(parameters).close()
        return True
    except CONNECT_ERRORS:
        return False


def brokers(settings: Settings) -> list[Broker]:
    """The two brokers, at the URLs the settings name."""
    redis_port = str(urlparse(settings.redis_url).port or 6379)
    return [
        Broker(
            name="redis",
            url=settings.redis_url,
            apt_package="redis-server",
            compose_service="redis",
            start_command=lambda: [
                "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1",
                "--port", redis_port, "--save", "", "--appendonly", "no",
            ],
            stop_command=["redis-cli", "-p", redis_port, "shutdown", "nosave"],
            answers=lambda: _redis_answers(settings.redis_url),
        ),
        Broker(
            name="rabbitmq",
            url=settings.amqp_url,
            apt_package="rabbitmq-server",
            compose_service="rabbitmq",
            start_command=lambda: ["rabbitmq-server", "-detached"],
            stop_command=["rabbitmqctl", "stop"],
            answers=lambda: _rabbitmq_answers(settings.amqp_url),
        ),
    ]


def _port_is_local(url: str) -> bool:
    host = urlparse(url).hostname or "127.0.0.1"
    return host in {"127.0.0.1", "localhost", "::1"}


def _wait_until_answers(broker: Broker) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if broker.answers():
            return True
        time.sleep(1.0)
    return False


def _run(command: list[str]) -> bool:
    print(f"  $ {' '.join(command)}", flush=True)
    return subprocess.run(command, check=False, timeout=600).returncode == 0


def _how_to_start(broker: Broker) -> str:
    # Compose only where it can start something: a plugin and an engine that answer.
    compose = (
        f"    docker compose up -d {broker.compose_service}\n" if compose_answers() else ""
    )
    return (
        f"start {broker.name} yourself, then run this again. Any one of:\n"
        f"{compose}"
        f"    sudo apt-get install -y {broker.apt_package} && "
        f"sudo {' '.join(broker.start_command())}\n"
        f"  or point the suite at a running one with "
        f"{'REDIS_URL' if broker.name == 'redis' else 'AMQP_URL'}=..."
    )


def bring_up(broker: Broker) -> str | None:
    """Make one broker answer. Returns how it was started ("binary", "compose",
    "apt"), None if it already answered; raises RuntimeError with the next step."""
    if broker.answers():
        print(f"{broker.name}: already reachable at {broker.display_url}")
        return None
    if not _port_is_local(broker.url):
        raise RuntimeError(f"{broker.name} at {broker.display_url} does not answer; start it there")
    print(f"{broker.name}: not reachable at {broker.display_url}; starting it")
    binary = broker.start_command()[0]
    if shutil.which(binary) and _run(broker.start_command()) and _wait_until_answers(broker):
        return "binary"
    if compose_answers() and _run(
        ["docker", "compose", "up", "-d", "--wait", broker.compose_service]
    ) and _wait_until_answers(broker):
        return "compose"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        installed = _run(["apt-get", "update", "-q"]) and _run(
            ["apt-get", "install", "-y", "-q", broker.apt_package]
        )
        # Debian's packages may start the service themselves; start it if they did not.
        started = installed and (broker.answers() or _run(broker.start_command()))
        if started and _wait_until_answers(broker):
            return "apt"
    raise RuntimeError(f"{broker.name} is not reachable at {broker.display_url}: "
                       + _how_to_start(broker))


def _load_state() -> dict[str, str]:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {}


def up(settings: Settings) -> int:
    """Bring every broker up; record what was started so ``down`` can stop it."""
    state = _load_state()
    failed = False
    for broker in brokers(settings):
        try:
            how = bring_up(broker)
        except RuntimeError as error:
            print(f"error: {error}", file=sys.stderr)
            failed = True
            continue
        if how is not None:
            state[broker.name] = how
            print(f"{broker.name}: started ({how}) and reachable at {broker.display_url}")
    STATE_FILE.write_text(json.dumps(state))
    return EXIT_USAGE if failed else 0


def status(settings: Settings) -> int:
    """Print whether each broker answers; non-zero if any does not."""
    missing = 0
    for broker in brokers(settings):
        ok = broker.answers()
        missing += not ok
        print(f"{broker.name:9} {'reachable' if ok else 'NOT reachable'} at {broker.display_url}")
    return EXIT_USAGE if missing else 0


def down(settings: Settings) -> int:
    """Stop the brokers that ``up`` started (and only those)."""
    state = _load_state()
    for broker in brokers(settings):
        how = state.pop(broker.name, None)
        if how is None:
            print(f"{broker.name}: not started by this tool; leaving it running")
        elif how == "compose":
            _run(["docker", "compose", "stop", broker.compose_service])
        else:
            _run(broker.stop_command)
    STATE_FILE.write_text(json.dumps(state))
    return 0


#: What ``python -m middlewares brokers ACTION`` does, by action.
ACTIONS: dict[str, Callable[[Settings], int]] = {"up": up, "status": status, "down": down}
