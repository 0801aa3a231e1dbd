"""The three addresses (listen, advertised, coordinator), ``join`` that cannot reach its
coordinator, and waiting for nodes started elsewhere (``--external-nodes``). The live
nodes each node announces in Redis are tested in tests/integration/test_cluster.py."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from middlewares.addresses import (
    advertised_host,
    exposure_warning,
    is_loopback,
    is_wildcard,
    node_host,
    route_source,
    url_host,
)
from middlewares.contract import LiveNode
from middlewares.launch.deployment import DeploymentFailed
from middlewares.registry import get_backend
from middlewares.settings import Settings
from middlewares.stub import StubBackend
from stress.external import ExternalDeployment
from tests.helpers import free_port


def test_loopback_and_wildcard_addresses_are_told_apart() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("10.0.0.1") and not is_loopback("0.0.0.0")
    assert is_wildcard("0.0.0.0") and is_wildcard("::") and not is_wildcard("127.0.0.1")
    assert url_host("::1") == "[::1]" and url_host("10.0.0.1") == "10.0.0.1"


def test_the_advertised_address_defaults_to_the_listen_address() -> None:
    assert advertised_host(Settings(host="10.1.2.3")) == "10.1.2.3"
    assert advertised_host(Settings(host="10.1.2.3", advertise_host="192.0.2.7")) == "192.0.2.7"
    # On a wildcard: the interface routing to the coordinator; here loopback routes to
    # this machine, so an address of this machine that is not loopback, if it has one.
    wildcard = advertised_host(Settings(host="0.0.0.0"))
    assert not is_wildcard(wildcard)
    assert route_source("127.0.0.1") == "127.0.0.1"


def test_a_node_reports_its_own_address_or_the_one_routing_to_redis() -> None:
    assert node_host(Settings(host="10.1.2.3")) == "10.1.2.3"
    assert node_host(Settings(advertise_host="192.0.2.7")) == "192.0.2.7"
    assert node_host(Settings(redis_url="redis://127.0.0.1:6379/0")) == "127.0.0.1"


def test_servers_beyond_loopback_get_one_warning_line() -> None:
    assert exposure_warning("XML-RPC", "127.0.0.1") is None
    warning = exposure_warning("Pyro4", "0.0.0.0")
    assert warning is not None and "\n" not in warning
    assert "no authentication" in warning and "trusted network" in warning
    for name in ("xmlrpc", "pyro"):
        assert get_backend(name).exposure_warning(Settings(host="0.0.0.0"))
        assert get_backend(name).exposure_warning(Settings()) is None
    for name in ("redis", "rabbitmq"):  # they listen on nothing
        assert get_backend(name).exposure_warning(Settings(host="0.0.0.0")) is None


def test_a_coordination_that_could_not_be_found_is_refused() -> None:
    backend = get_backend("xmlrpc")
    with pytest.raises(ValueError, match=re.escape("--coordinator-host 10.9.9.9")):
        backend.coordinator_processes("filter", Settings(host="10.9.9.9"), 0)


@pytest.mark.parametrize("middleware", ["xmlrpc", "pyro"])
def test_join_without_a_coordinator_exits_with_one_line(middleware: str) -> None:
    ports = ["--filter-port", str(free_port()), "--pyro-ns-port", str(free_port())]
    result = subprocess.run(
        [sys.executable, "-m", "middlewares", "join", middleware, "filter", *ports],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "cannot reach" in lines[0]


class _Nodes(StubBackend):
    """The stub middleware, with a fixed list of live nodes."""

    def __init__(self, nodes: list[LiveNode]) -> None:
        self._nodes = nodes

    def live_nodes(self, service: str, settings: Settings) -> list[LiveNode]:
        return self._nodes


def test_a_study_waits_for_exactly_the_wanted_nodes() -> None:
    said: list[str] = []
    one = [LiveNode("b-1", "192.0.2.11")]
    waiting = ExternalDeployment(_Nodes(one), "filter", Settings(), 2, wait=0.3, say=said.append)
    with pytest.raises(DeploymentFailed, match=re.escape("1 live: b-1@192.0.2.11")):
        waiting.__enter__()
    assert said and "exactly 2 live" in said[0] and "join" in said[0]
    two = [*one, LiveNode("c-1", "192.0.2.12")]
    with ExternalDeployment(_Nodes(two), "filter", Settings(), 2, wait=0.3) as ready:
        assert ready.node_pids() == [] and ready.worker_pids() == []
