"""``python -m stress.hosts``: the filter with its nodes on emulated hosts beside the same
deployment on loopback, measured in one run (root, Linux).

For each repeat and middleware it runs the same deployment twice, alternately:

- **loopback**: the coordination (``serve <mw> filter --nodes 0``), two nodes
  (``join``) and the study's clients all on 127.0.0.1;
- **emulated hosts**: the coordination and the brokers on one network namespace, each
  node on one of two others, the clients on a fourth (see
  :mod:`middlewares.launch.emulated_hosts`; the links get netem's delay when the
  kernel has it).

Both use a private ``redis-server`` and reach the machine's RabbitMQ through the same
forwarder, so they differ only in where the processes sit. Each measurement is
``python -m stress --external-nodes 2`` (pipelined filter), so this also runs the
studies' way of measuring nodes started elsewhere. It prints one line per run and a
table of the medians.
"""

from __future__ import annotations

import argparse
import csv
import signal
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from middlewares.launch.deployment import Deployment
from middlewares.launch.emulated_hosts import EmulatedHosts, python_module, unavailable_reason
from middlewares.registry import MIDDLEWARES, get_backend
from middlewares.settings import Settings
from stress.runner import free_port

#: The machine's RabbitMQ.
RABBITMQ = ("127.0.0.1", 5672)

#: The hosts of the two nodes.
NODES = ("node1", "node2")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m stress.hosts``."""
    parser = argparse.ArgumentParser(
        prog="python -m stress.hosts",
        description="Filter throughput with two nodes on emulated hosts (network namespaces "
        "on a bridge) beside the same deployment on loopback, alternately, in one run. "
        "Needs root and `ip netns`.",
    )
    parser.add_argument("--middleware", default="all", help="one middleware, a list, or all")
    parser.add_argument("--clients", type=int, default=4, help="client processes (default: 4)")
    parser.add_argument("--window", type=int, default=64, help="tasks in flight per client")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per run")
    parser.add_argument("--repeat", type=int, default=2, help="repeats of each pair of runs")
    parser.add_argument("--delay-ms", type=float, default=0.2, help="netem delay each way")
    return parser


class Place:
    """Where one side of the comparison runs its processes and finds its brokers."""

    def __init__(
        self,
        name: str,
        wrapper: Callable[[str], list[str]],
        address: Callable[[str], str],
        redis_url: str,
        amqp: str,
    ) -> None:
        self.name = name
        self.wrapper = wrapper
        self.address = address
        self.redis_url = redis_url
        self.amqp_url = f"amqp://guest:guest@{amqp}/%2F"


def measure(place: Place, middleware: str, args: argparse.Namespace, out: Path) -> float:
    """One stress run of the pipelined filter on two external nodes; its ops/s."""
    port = free_port()
    settings = Settings.from_env().with_changes(
        namespace=f"ibhostsbench-{uuid.uuid4().hex[:8]}",
        redis_url=place.redis_url,
        amqp_url=place.amqp_url,
        coordinator_host=place.address("broker"),
        filter_port=port,
        insult_port=free_port(),
        pyro_ns_port=free_port(),
    )
    coordination = Deployment(
        middleware,
        "filter",
        settings.with_changes(host=place.address("broker")),
        nodes=0,
        wrapper=place.wrapper("broker"),
    )
    nodes = [
        Deployment(
            middleware,
            "filter",
            settings.with_changes(host=place.address(host)),
            join_as=f"{host}-{uuid.uuid4().hex[:4]}",
            wrapper=place.wrapper(host),
        )
        for host in NODES
    ]
    run_out = out / f"{place.name}-{middleware}-{uuid.uuid4().hex[:6]}"
    study = python_module(
        "stress",
        "--middleware", middleware, "--service", "filter", "--filter-mode", "pipelined",
        "--clients", str(args.clients), "--window", str(args.window),
        "--duration", str(args.duration), "--warmup", str(args.warmup), "--repeat", "1",
        "--calibrate", "0", "--no-report", "--external-nodes", "2", "--external-wait", "60",
        "--out", str(run_out),
        *settings.with_changes(host=place.address("clients")).to_args(),
    )  # fmt: skip
    with coordination:
        for node in nodes:
            node.start()
        try:
            finished = subprocess.run(
                [*place.wrapper("clients"), *study],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                timeout=args.warmup + args.duration + 180,
            )
            if finished.returncode != 0:
                tail = "\n".join(finished.stderr.splitlines()[-5:])
                raise RuntimeError(f"the {place.name} run of {middleware} failed:\n{tail}")
        finally:
            for node in nodes:
                node.stop()
            # The study leaves a deployment it did not start alone: delete it here.
            get_backend(middleware).cleanup(settings)
    with (run_out / "stress.csv").open(encoding="utf-8") as table:
        rows = list(csv.DictReader(table))
    if not rows:
        raise RuntimeError(f"the {place.name} run of {middleware} measured nothing")
    return float(rows[0]["throughput_ops_s"])


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m stress.hosts``."""
    args = build_parser().parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        sys.exit(2)
    middlewares = list(MIDDLEWARES) if args.middleware == "all" else args.middleware.split(",")
    # SIGTERM unwinds like Ctrl-C, so the emulated hosts are always removed.
    signal.signal(signal.SIGTERM, _interrupt)
    results: dict[tuple[str, str], list[float]] = {}
    with (
        EmulatedHosts(["broker", *NODES, "clients"], delay_ms=args.delay_ms) as hosts,
        tempfile.TemporaryDirectory() as scratch,
    ):
        print(f"emulated hosts: {hosts.delay_note}", flush=True)
        emulated = Place(
            "emulated",
            lambda host: hosts.hosts[host].wrapper,
            lambda host: hosts.hosts[host].address,
            hosts.serve_redis("broker"),
            hosts.forward("broker", RABBITMQ[1], RABBITMQ),
        )
        loopback = Place(
            "loopback",
            lambda host: [],
            lambda host: "127.0.0.1",
            hosts.serve_redis(None, free_port()),
            hosts.forward(None, free_port(), RABBITMQ),
        )
        for repeat in range(1, args.repeat + 1):
            for middleware in middlewares:
                for place in (loopback, emulated):
                    rate = measure(place, middleware, args, Path(scratch))
                    results.setdefault((middleware, place.name), []).append(rate)
                    print(
                        f"repeat {repeat} {middleware:8} {place.name:8} {rate:10,.0f} tasks/s",
                        flush=True,
                    )
    print(
        f"\nfilter, pipelined, {args.clients} clients x {args.window} tasks in flight, "
        f"2 nodes; median of {args.repeat} runs of {args.duration:g} s"
    )
    print(f"{'middleware':10} {'loopback':>10} {'emulated':>10} {'ratio':>6}")
    for middleware in middlewares:
        local = statistics.median(results[(middleware, "loopback")])
        remote = statistics.median(results[(middleware, "emulated")])
        print(f"{middleware:10} {local:10,.0f} {remote:10,.0f} {remote / local:6.2f}")


if __name__ == "__main__":
    main()
