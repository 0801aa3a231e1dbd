"""What to tell a user whose broker does not answer, fitted to this machine.

``docker compose`` is suggested only where a Docker engine and the Compose plugin both
answer; elsewhere the installed server, or the Debian package to install, is named.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

#: Seconds each Docker probe may take: a hint must not hold up an error message.
PROBE_SECONDS = 3.0

#: Per broker: its Compose service, its server binary and its Debian package.
_BROKERS = {
    "redis": ("redis", "redis-server", "redis-server"),
    "rabbitmq": ("rabbitmq", "rabbitmq-server", "rabbitmq-server"),
}


@functools.cache
def compose_answers() -> bool:
    """True when ``docker compose`` can start containers here: the Compose plugin and a
    running Docker engine both answer. Asked once per process."""
    if shutil.which("docker") is None:
        return False
    for command in (["docker", "compose", "version"], ["docker", "info"]):
        try:
            done = subprocess.run(
                command, capture_output=True, timeout=PROBE_SECONDS, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        if done.returncode != 0:
            return False
    return True


def start_hint(broker: str) -> str:
    """``start it with ...`` for ``broker`` (redis or rabbitmq) on this machine."""
    service, binary, package = _BROKERS[broker]
    first = "start it with `python -m middlewares brokers up`"
    if compose_answers():
        return f"{first} or `docker compose up -d {service}`"
    if shutil.which(binary):
        return f"{first}, which starts the installed {binary}"
    return f"{first}, or install it first: `sudo apt-get install -y {package}`"
