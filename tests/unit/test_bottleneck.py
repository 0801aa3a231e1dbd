"""What limited a run, from synthetic per-process CPU samples."""

from __future__ import annotations

import math

import pytest

from results.bottleneck import add_bottlenecks, attribute
from stress.rows import process_columns
from stress.sampler import GroupUsage, ProcessUsage


def _group(*processes: tuple[int, str, float]) -> GroupUsage:
    usage = tuple(ProcessUsage(pid, role, cpu / 100, cpu, 30.0) for pid, role, cpu in processes)
    return GroupUsage(
        cpu_pct=sum(p.cpu_pct for p in usage),
        cpu_max_pct=max((p.cpu_pct for p in usage), default=0.0),
        rss_mb=30.0 * len(usage),
        processes=usage,
    )


def _row(
    nodes: list[float],
    coordinator: float | None = None,
    brokers: dict[str, float] | None = None,
    clients: float = 30.0,
    machine: float = 50.0,
    node_cpu: float = 0.25,
    coordinator_cpu: float = 0.0,
) -> dict:
    """A run's row built from samples as the runner builds it; ``brokers`` are the CPU
    of the broker processes on the requests' path (the only ones the runner samples)."""
    on_path = {"redis-server": 10.0} if brokers is None else brokers
    node_processes = [(100 + i, "middlewares.fake.node", cpu) for i, cpu in enumerate(nodes)]
    service = list(node_processes)
    if coordinator is not None:
        service.append((99, "middlewares.fake.front", coordinator))
    usage = {
        "service": _group(*service),
        "nodes": _group(*node_processes),
        "clients": _group((200, "client", clients)),
        "brokers": _group(*((300 + i, name, cpu) for i, (name, cpu) in enumerate(on_path.items()))),
    }
    return {
        **process_columns(usage),
        "loadgen_cpu_max_pct": clients,
        "machine_cpu_pct": machine,
        "node_cpu": node_cpu,
        "coordinator_cpu": coordinator_cpu,
    }


def test_nodes_at_their_cap_are_capacity_bound():
    found = attribute(_row([24.8, 23.0, 22.6], coordinator=40.0))
    assert (found.kind, found.process) == ("capacity", "nodes")
    assert found.cpu_pct == 24.8 and found.limit_pct == 25.0


def test_a_saturated_front_is_architecture_bound_even_with_busy_nodes():
    found = attribute(_row([24.0, 24.5, 23.9], coordinator=96.0))
    assert found.kind == "architecture"
    assert found.process == "middlewares.fake.front"
    assert found.cpu_pct == 96.0


def test_a_capped_coordinator_is_judged_against_its_own_cap():
    found = attribute(_row([10.0], coordinator=46.0, coordinator_cpu=0.5))
    assert (found.kind, found.limit_pct) == ("architecture", 50.0)


def test_the_busiest_broker_on_the_request_path_is_what_counts():
    assert attribute(_row([12.0], brokers={"redis-server": 40.0})).kind == "none"
    found = attribute(_row([12.0], brokers={"redis-server": 10.0, "beam.smp": 99.0}))
    assert (found.kind, found.process) == ("architecture", "beam.smp (broker)")


def test_the_busiest_saturated_process_is_named():
    found = attribute(_row([10.0], coordinator=91.0, brokers={"redis-server": 99.0}))
    assert found.process == "redis-server (broker)"


def test_a_full_machine_comes_before_nodes_at_their_cap():
    found = attribute(_row([24.9, 24.9, 24.9], machine=97.0))
    assert (found.kind, found.cpu_pct) == ("machine", 97.0)


def test_busy_clients_limit_when_nothing_else_is_saturated():
    found = attribute(_row([12.0, 11.0], clients=95.0, machine=70.0))
    assert (found.kind, found.process) == ("clients", "clients")


def test_nothing_saturated_is_latency_bound():
    found = attribute(_row([8.0, 7.5], coordinator=20.0))
    assert found.kind == "none" and math.isnan(found.cpu_pct)
    assert found.describe() == "none saturated (latency-bound)"


def test_uncapped_nodes_are_judged_against_a_whole_core():
    assert attribute(_row([60.0], node_cpu=0.0)).kind == "none"
    assert attribute(_row([93.0], node_cpu=0.0)).kind == "capacity"


def test_rows_without_nodes_or_coordinator_are_handled():
    columns = process_columns(
        {
            "service": _group(),
            "nodes": _group(),
            "brokers": _group(),
        }
    )
    assert math.isnan(columns["node_cpu_max_pct"]) and columns["coordinator_process"] == ""
    assert attribute({**columns, "machine_cpu_pct": 20.0}).kind == "none"


def test_rows_get_the_bottleneck_columns():
    rows = [_row([24.9], coordinator=None), _row([10.0], coordinator=99.5)]
    add_bottlenecks(rows)
    assert [r["bottleneck"] for r in rows] == ["capacity", "architecture"]
    assert rows[1]["bottleneck_process"] == "middlewares.fake.front"
    assert rows[1]["bottleneck_cpu_pct"] == pytest.approx(99.5)
    assert rows[1]["bottleneck_limit_pct"] == 100.0
