"""Emulated hosts on one Linux machine (root): network namespaces joined by a bridge.

Each host is a network namespace with one interface, ``eth0``, the end of a veth pair
whose other end is a port of a bridge in the root namespace; every host has an address
of a private /24 (``10.213.X.0/24``, X chosen free at start) and each link gets a delay
with netem when the kernel has it (``tc qdisc ... netem delay``, on each host's egress,
so a round trip between two hosts crosses it twice). The root namespace holds the
bridge's address, ``.1``, and nothing else of the subnet.

Every name carries a random token (``ib<token>-<host>``, ``ib<token>br``), so parallel
runs never meet, and :meth:`EmulatedHosts.close` removes exactly what was created:
first every process it started and anything else left in its namespaces, then the veth
pairs, the bridge and the namespaces. It runs on any exit of the ``with`` block,
Ctrl-C included, and ignores Ctrl-C while it runs.

``python -m middlewares.launch.forwarder`` makes a service of the root namespace (the
machine's RabbitMQ on 127.0.0.1) appear on one emulated host's address.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from middlewares.launch.processes import ignoring_ctrl_c

log = logging.getLogger(__name__)

#: The private range the emulated subnets come from: 10.213.X.0/24.
SUBNET_PREFIX = "10.213"

#: Seconds each command of ``ip`` or ``tc`` may take.
COMMAND_TIMEOUT = 10.0


class EmulationUnavailable(RuntimeError):
    """This machine cannot emulate hosts (not root, or no ``ip netns``); the message
    says which, in one line."""


def unavailable_reason() -> str | None:
    """Why hosts cannot be emulated here, in one line, or None when they can."""
    if os.geteuid() != 0:
        return "emulated hosts need root (network namespaces, veth pairs, a bridge)"
    if shutil.which("ip") is None:
        return "emulated hosts need the `ip` command (iproute2)"
    try:
        subprocess.run(
            ["ip", "netns", "list"], check=True, capture_output=True, timeout=COMMAND_TIMEOUT
        )
    except (OSError, subprocess.SubprocessError):
        return "emulated hosts need `ip netns`, which does not work here"
    return None


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, check=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )


def _quietly(*command: str) -> None:
    """Run a clean-up command; failing (the object is gone already) is fine."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(command, capture_output=True, timeout=COMMAND_TIMEOUT)


def _free_subnet() -> str:
    """A 10.213.X.0/24 no interface of the root namespace uses now."""
    used = _run("ip", "-o", "-4", "addr", "show").stdout
    taken = {int(x) for x in re.findall(rf"inet {re.escape(SUBNET_PREFIX)}\.(\d+)\.", used)}
    free = [x for x in range(256) if x not in taken]
    if not free:
        raise EmulationUnavailable(f"every {SUBNET_PREFIX}.X.0/24 is in use on this machine")
    return f"{SUBNET_PREFIX}.{secrets.choice(free)}"


@dataclass(frozen=True)
class Host:
    """One emulated host: its namespace and its address."""

    name: str
    namespace: str
    address: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run on this host (``ip netns exec`` execs it: same pid, same signals)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    @property
    def wrapper(self) -> list[str]:
        """What goes before a command line to run it on this host."""
        return self.command([])

    def listening(self) -> list[str]:
        """The local addresses (``host:port``) of the TCP sockets listening on this host,
        as ``ss -ltn`` shows them inside its namespace."""
        output = _run(*self.command(["ss", "-ltnH"])).stdout
        return [line.split()[3] for line in output.splitlines() if line.strip()]


class EmulatedHosts:
    """Hosts named ``names``, each a network namespace on one bridge, ``delay_ms`` on
    each host's egress when the kernel has netem; a context manager that always
    removes everything it created.

    :attr:`delay_note` says whether the delay is there; :meth:`start` runs a process on
    a host, stopped by :meth:`close` if still running.
    """

    def __init__(self, names: Sequence[str], delay_ms: float = 0.2) -> None:
        if unavailable := unavailable_reason():
            raise EmulationUnavailable(unavailable)
        self.token = secrets.token_hex(3)
        self.delay_ms = delay_ms
        self.delay_note = ""
        self.bridge = f"ib{self.token}br"
        self.hosts: dict[str, Host] = {}
        self._names = list(names)
        self._links: list[str] = []
        self._namespaces: list[str] = []
        self._bridge_made = False
        self._processes: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Self:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def gateway(self) -> str:
        """The bridge's address in the root namespace: where the root is reached."""
        return f"{self._subnet}.1"

    def _build(self) -> None:
        self._subnet = _free_subnet()
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self._bridge_made = True
        _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        delays = []
        for index, name in enumerate(self._names, start=2):
            namespace = f"ib{self.token}-{name}"
            _run("ip", "netns", "add", namespace)
            self._namespaces.append(namespace)
            link = f"ib{self.token}v{index}"
            _run("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0",
                 "netns", namespace)  # fmt: skip
            self._links.append(link)
            _run("ip", "link", "set", link, "master", self.bridge, "up")
            address = f"{self._subnet}.{index}"
            _run("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            _run("ip", "-n", namespace, "link", "set", "eth0", "up")
            _run("ip", "-n", namespace, "link", "set", "lo", "up")
            delays.append(self._delay(namespace))
            self.hosts[name] = Host(name, namespace, address)
        self.delay_note = (
            f"links delayed {self.delay_ms:g} ms each way (netem)"
            if all(delays)
            else "links without added delay: this kernel has no netem (sch_netem)"
        )

    def _delay(self, namespace: str) -> bool:
        """Delay the host's egress; False when the kernel has no netem."""
        if self.delay_ms <= 0:
            return True
        try:
            _run("tc", "-n", namespace, "qdisc", "add", "dev", "eth0", "root", "netem",
                 "delay", f"{self.delay_ms:g}ms")  # fmt: skip
        except subprocess.CalledProcessError as error:
            log.info("no link delay on %s: %s", namespace, error.stderr.strip())
            return False
        return True

    def start(self, host: str | None, argv: Sequence[str], **popen: object) -> subprocess.Popen:
        """Start ``argv`` on ``host`` (None: the root namespace) in a session of its own."""
        command = list(argv) if host is None else self.hosts[host].command(argv)
        process = subprocess.Popen(command, start_new_session=True, **popen)  # type: ignore[call-overload]
        with self._lock:
            self._processes.append(process)
        return process

    def forward(self, host: str | None, port: int, upstream: tuple[str, int]) -> str:
        """Make ``upstream`` (an address of the root namespace, e.g. the machine's
        RabbitMQ on 127.0.0.1) answer at ``host``'s address and ``port`` (host None:
        at 127.0.0.1 of the root namespace, the same hop for a loopback comparison);
        returns ``address:port`` once it does."""
        address = "127.0.0.1" if host is None else self.hosts[host].address
        where = [] if host is None else ["--netns", self.hosts[host].namespace]
        self.start(
            None,
            python_module(
                "middlewares.launch.forwarder",
                *where,
                "--listen", f"{address}:{port}",
                "--to", f"{upstream[0]}:{upstream[1]}",
            ),
        )  # fmt: skip
        wait_listening(address, port)
        return f"{address}:{port}"

    def serve_redis(self, host: str | None, port: int = 6379) -> str:
        """Start a private ``redis-server`` on ``host`` (None: on 127.0.0.1 of the root
        namespace), without persistence; its URL, once it accepts connections."""
        address = "127.0.0.1" if host is None else self.hosts[host].address
        self.start(
            host,
            ["redis-server", "--bind", address, "--port", str(port), "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--dir", tempfile.gettempdir()],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_listening(address, port)
        return f"redis://{address}:{port}/0"

    def in_subnet(self, address: str) -> bool:
        """True for an address of these hosts' subnet."""
        network = ipaddress.ip_network(f"{self._subnet}.0/24")
        return ipaddress.ip_address(address) in network

    def close(self) -> None:
        """Stop every process started here and anything left in the namespaces, then
        remove the veth pairs, the bridge and the namespaces. Safe to call twice."""
        with ignoring_ctrl_c():
            with self._lock:
                processes, self._processes = self._processes, []
            _stop(processes)
            for namespace in self._namespaces:
                _kill_everything_in(namespace)
            for link in self._links:
                _quietly("ip", "link", "del", link)
            if self._bridge_made:
                _quietly("ip", "link", "del", self.bridge)
            for namespace in self._namespaces:
                _quietly("ip", "netns", "del", namespace)
            self._links, self._namespaces, self._bridge_made = [], [], False


def _stop(processes: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """SIGTERM each process's session, then SIGKILL what is left after ``grace``."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _kill_everything_in(namespace: str) -> None:
    """SIGKILL every process still in ``namespace`` (ours: we made the namespace)."""
    try:
        pids = _run("ip", "netns", "pids", namespace).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def wait_listening(address: str, port: int, timeout: float = 15.0) -> None:
    """Wait until something accepts TCP connections at ``address:port``; raises
    TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((address, port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"nothing listens at {address}:{port}") from None
        time.sleep(0.05)


def python_module(module: str, *args: str) -> list[str]:
    """The command line running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]
