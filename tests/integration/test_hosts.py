"""The n-node forms across emulated hosts: the coordination and the brokers on one host,
two nodes on two others, the clients on a fourth (network namespaces on a bridge, see
:mod:`middlewares.launch.emulated_hosts`).

For each middleware and service: the answers are right, each node serves at least 20%
of a stream, a node SIGKILLed mid-stream loses nothing and answers nothing twice, and
every node and callback server listens on its own host's address. One set of hosts, one
private Redis and one RabbitMQ forwarder serve the whole module.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import tests.hosts_driver as driver
from middlewares.contract import LiveNode
from middlewares.launch.deployment import Deployment
from middlewares.launch.emulated_hosts import (
    EmulatedHosts,
    python_module,
    unavailable_reason,
)
from middlewares.registry import MIDDLEWARES, get_backend
from middlewares.settings import Settings
from tests.helpers import wait_for

pytestmark = pytest.mark.hosts

#: The machine's RabbitMQ, which the broker host forwards to.
RABBITMQ = ("127.0.0.1", 5672)

#: Calls of the stream whose spread is checked, and of the stream a node is killed in.
PHASE1, PHASE2 = 240, 900

#: Simulated service time per request or task: the nodes, not the clients, limit the
#: rate, so the load spreads by each node's capacity.
WORK_MS = 2.0


@dataclass
class Network:
    """The module's emulated hosts and the brokers' URLs on the broker host."""

    hosts: EmulatedHosts
    redis_url: str
    amqp_url: str

    def address(self, host: str) -> str:
        return self.hosts.hosts[host].address


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    # A SIGTERM (a CI timeout) unwinds like Ctrl-C, so the hosts are removed either way.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with EmulatedHosts(["broker", "node1", "node2", "clients"], delay_ms=0.2) as hosts:
            print(f"emulated hosts {hosts.token}: {hosts.delay_note}")
            redis_url = hosts.serve_redis("broker")
            rabbitmq = hosts.forward("broker", RABBITMQ[1], RABBITMQ)
            yield Network(hosts, redis_url, f"amqp://guest:guest@{rabbitmq}/%2F")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


_ports = iter(range(20000, 30000, 10))


def base_settings(network: Network) -> Settings:
    """Settings of one test's deployment, as seen from any host but its listen address."""
    port = next(_ports)
    return Settings(
        namespace=f"ibhosts-{uuid.uuid4().hex[:8]}",
        redis_url=network.redis_url,
        amqp_url=network.amqp_url,
        coordinator_host=network.address("broker"),
        insult_port=port,
        filter_port=port + 1,
        echo_port=port + 2,
        pyro_ns_port=port + 3,
        broadcast_interval=1.0,
        timeout=10.0,
        work_ms=WORK_MS,
    )


def stop_all(deployments: list[Deployment]) -> None:
    """Stop deployments at once (each waits for its processes to leave gracefully)."""
    threads = [threading.Thread(target=d.__exit__, args=(None, None, None)) for d in deployments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def live(middleware: str, service: str, settings: Settings) -> list[LiveNode]:
    return get_backend(middleware).live_nodes(service, settings)


def served(deployment: Deployment, before: dict[str, int]) -> dict[str, int]:
    counts = deployment.node_counters()
    return {node: counts.get(node, 0) - before.get(node, 0) for node in counts}


class Clients:
    """The driver running on the clients' host, spoken to line by line."""

    def __init__(self, network: Network, spec: dict[str, Any]) -> None:
        self.process = network.hosts.start(
            "clients",
            python_module(driver.__name__, json.dumps(spec)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def expect(self, word: str) -> str:
        """Read lines until one starts with ``word``; return the rest of it."""
        for line in self.process.stdout:
            if line.startswith(word):
                return line[len(word) :].strip()
        raise AssertionError(f"the clients ended before saying {word!r}")

    def go_on(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()


@pytest.mark.parametrize("service", ["insult", "filter"])
@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_nodes_on_other_hosts(network: Network, middleware: str, service: str) -> None:
    settings = base_settings(network)
    backend = get_backend(middleware)
    coordination = Deployment(
        middleware,
        service,
        settings.with_changes(host=network.address("broker")),
        nodes=0,
        wrapper=network.hosts.hosts["broker"].wrapper,
    )
    nodes = [
        Deployment(
            middleware,
            service,
            settings.with_changes(host=network.address(host)),
            join_as=f"{host}-{uuid.uuid4().hex[:4]}",
            wrapper=network.hosts.hosts[host].wrapper,
        )
        for host in ("node1", "node2")
    ]
    try:
        coordination.start()
        starting = [threading.Thread(target=node.start) for node in nodes]
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join()
        # A join is ready once the service answers, which the other node may do first.
        assert wait_for(lambda: len(live(middleware, service, settings)) == 2, timeout=20)
        assert wait_for(lambda: all(node.node_pids() for node in nodes), timeout=10)
        hosts = {node.host for node in live(middleware, service, settings)}
        assert hosts == {network.address("node1"), network.address("node2")}

        for host in ("node1", "node2"):
            listening = network.hosts.hosts[host].listening()
            # Only nodes that serve clients directly listen at all; none on loopback.
            assert all(a.startswith(network.address(host) + ":") for a in listening), listening
            if backend.profile.direct and service == "insult":
                assert listening, f"the {middleware} node on {host} listens nowhere"

        clients = Clients(
            network,
            {
                "middleware": middleware,
                "service": service,
                "settings": settings.with_changes(host=network.address("clients")).as_dict(),
                "clients": 8,
                "phase1": PHASE1,
                "phase2": PHASE2,
            },
        )
        before = nodes[0].node_counters()
        clients.expect("phase1")
        assert wait_for(lambda: sum(served(nodes[0], before).values()) >= PHASE1, timeout=10)
        shares = served(nodes[0], before)
        total = sum(shares.values())
        assert len(shares) == 2 and all(n / total >= 0.2 for n in shares.values()), shares
        clients.go_on()
        clients.expect("kill")
        victim = nodes[0].node_pids()[0]
        subprocess.run(["kill", "-KILL", str(victim)], check=True)
        result = json.loads(clients.expect("result"))
        assert clients.process.wait(30) == 0
    finally:
        stop_all([*nodes, coordination])
        backend.cleanup(settings)

    assert not result["errors"], result["errors"]
    assert result["answered"] == result["calls"], result
    if service == "filter":
        assert result["sample"], "the README's example was not censored right"
        assert result["missing_count"] == 0 and not result["wrong"], result
        assert result["answered_twice"] == 0, result
    else:
        assert result["added"] and result["stored"] and result["random_known"], result
        assert result["broadcast"], "no broadcast reached the subscriber on the clients' host"
        assert not result["missing"] and not result["unknown_answers"], result
        assert result["stored_twice"] == 0, result
        if backend.profile.direct:
            # The subscriber's callback server listens on the clients' host address.
            callback = result["subscribed_listening"]
            assert callback and all(
                a.startswith(network.address("clients") + ":") for a in callback
            ), callback


def test_processes_and_namespaces_are_removed_after_use() -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with EmulatedHosts(["a", "b"], delay_ms=0) as hosts:
        token = hosts.token
        sleeper = hosts.start("a", ["sleep", "600"])
        assert hosts.hosts["b"].address != hosts.hosts["a"].address
    assert sleeper.poll() is not None
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert token not in namespaces and f"ib{token}br" not in links_now()
    assert wait_for(lambda: f"ib{token}" not in links_now(), timeout=10)


def links_now() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
