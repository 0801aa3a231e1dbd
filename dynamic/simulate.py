"""What-if runs of the scaling policy with no broker: ``python -m dynamic.simulate``.

The master, the policy and the arrival meter are the very code python -m dynamic.Main
runs; only the queue and the workers are replaced by a model (dynamic.model.QueueModel).
So a profile far beyond one machine (100,000 msg/s, 500 workers) shows how the policy
would behave, in a second, with the same figure as a real run. It writes simulated.csv
and simulated.png into a new directory under results/runs/ (--out results replaces the
shipped example).

Examples::

    python -m dynamic.simulate                                   # the large default profile
    python -m dynamic.simulate --like results/dynamic.json       # replay a real run's setup
    python -m dynamic.simulate --trace results/dynamic.csv --worker-rate 19
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from dynamic.master import Master
from dynamic.meter import RateSince
from dynamic.model import QueueModel, SimulatedLauncher
from dynamic.policy import PolicyConfig, ScalingPolicy
from dynamic.record import Tick, TickWriter, read_run_info
from dynamic.trace import RateTrace
from middlewares.runtime import EXIT_USAGE, CommandParser, writable_directory

#: The name of the files a simulation writes in its --out directory.
RECORD = "simulated"
#: Ramp to 100,000 msg/s, a burst past what 500 workers can take, then back down.
DEFAULT_PROFILE = "5000:20,100000:40,140000:10,30000:40,0:30"


@dataclass(frozen=True)
class Simulation:
    """Everything a simulated run depends on.

    Attributes:
        trace: The offered rate over time.
        policy: The scaling policy's parameters.
        poll: Seconds between two ticks of the master.
        prefetch: Messages a worker holds at most.
        startup: Seconds from starting a worker to its first task.
        drain: Seconds simulated after the trace ends, to show the scale-down.
    """

    trace: RateTrace
    policy: PolicyConfig
    poll: float = 1.0
    prefetch: int = 1
    startup: float = 0.5
    drain: float = 15.0

    def __post_init__(self) -> None:
        if not self.poll > 0 or self.drain < 0:
            raise ValueError(f"need poll > 0 and drain >= 0, got {self.poll}, {self.drain}")


def simulate(simulation: Simulation) -> list[Tick]:
    """Run the master over the model from time 0 to the end of the trace plus the drain."""
    model = QueueModel(simulation.policy.worker_rate, simulation.prefetch, simulation.startup)
    launcher = SimulatedLauncher(model)
    trace = simulation.trace
    offered = RateSince(lambda: model.arrived, lambda: model.time)
    master = Master(model, launcher, ScalingPolicy(simulation.policy), offered)
    # As the real master, begin with the minimum already running.
    for _ in range(simulation.policy.min_workers):
        model.add_worker(warm=True)
    ticks = [master.tick()]
    while model.time < trace.duration + simulation.drain - 1e-9:
        model.advance(simulation.poll, trace)
        ticks.append(master.tick())
    return ticks


def build_parser() -> argparse.ArgumentParser:
    """The simulator's command line."""
    parser = CommandParser(
        prog="python -m dynamic.simulate",
        description=__doc__.split("\n\n")[1],
        epilog="Flags left out are taken from --like, then from the defaults shown. "
        "Example: python -m dynamic.simulate --like results/dynamic.json",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--profile", help=f"offered load as RATE:SECONDS steps (default: {DEFAULT_PROFILE})"
    )
    source.add_argument("--trace", type=Path, help="replay the rate of a recorded run (its CSV)")
    parser.add_argument(
        "--like",
        type=Path,
        help="take the parameters (and profile) of a run, e.g. results/dynamic.json",
    )
    parser.add_argument("-T", "--target-time", type=float, help="T, seconds to drain (default: 2)")
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("-C", "--capacity", type=float, help="C, messages one worker handles in T")
    rate.add_argument(
        "--worker-rate",
        type=float,
        help="messages per second per worker (default: 250); C = rate x T",
    )
    parser.add_argument("--min", dest="min_workers", type=int, help="fewest workers (default: 1)")
    parser.add_argument("--max", dest="max_workers", type=int, help="most workers (default: 500)")
    parser.add_argument("--window", type=float, help="scale-down window, seconds (default: 10)")
    parser.add_argument("--poll", type=float, help="seconds between ticks (default: 1)")
    parser.add_argument("--prefetch", type=int, help="messages a worker holds (default: 1)")
    parser.add_argument(
        "--startup", type=float, help="seconds before a new worker consumes (default: 0.5)"
    )
    parser.add_argument(
        "--drain", type=float, help="seconds simulated after the profile (default: window + 5)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"directory for {RECORD}.csv and {RECORD}.png; --out results replaces the "
        f"shipped example (default: results/runs/{RECORD}-<UTC time>)",
    )
    return parser


_DEFAULTS: dict[str, float] = {
    "target_time": 2.0,
    "worker_rate": 250.0,
    "min_workers": 1,
    "max_workers": 500,
    "window": 10.0,
    "poll": 1.0,
    "prefetch": 1,
    "startup": 0.5,
}


def simulation_from_args(args: argparse.Namespace) -> Simulation:
    """Resolve flags, then ``--like``, then defaults; raises ValueError on bad values."""
    like = read_run_info(args.like) if args.like else {}

    def pick(name: str) -> float:
        # _DEFAULTS has every name, so there is always a value.
        choices = (getattr(args, name), like.get(name), _DEFAULTS[name])
        return next(value for value in choices if value is not None)

    if args.trace:
        trace = RateTrace.from_record(args.trace)
    else:
        trace = RateTrace.parse(args.profile or str(like.get("profile", DEFAULT_PROFILE)))
    target_time = float(pick("target_time"))
    if args.capacity is not None:
        capacity = args.capacity
    else:
        capacity = float(pick("worker_rate")) * target_time
    policy = PolicyConfig(
        capacity=capacity,
        target_time=target_time,
        min_workers=int(pick("min_workers")),
        max_workers=int(pick("max_workers")),
        window=float(pick("window")),
    )
    drain = args.drain if args.drain is not None else policy.window + 5
    return Simulation(
        trace=trace,
        policy=policy,
        poll=float(pick("poll")),
        prefetch=int(pick("prefetch")),
        startup=float(pick("startup")),
        drain=drain,
    )


def main(argv: list[str] | None = None) -> int:
    """Simulate, write the record and the figure, and summarize."""
    args = build_parser().parse_args(argv)
    # Imported once the command line is checked: pandas and matplotlib take seconds to
    # load on a busy machine, and a wrong command line must fail at once.
    from dynamic.plot import plot_ticks
    from results.files import default_out

    try:
        simulation = simulation_from_args(args)
        out = writable_directory(args.out or default_out(RECORD))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    csv_path, png_path = out / f"{RECORD}.csv", out / f"{RECORD}.png"
    ticks = simulate(simulation)
    with TickWriter(csv_path) as writer:
        for tick in ticks:
            writer.write(tick)
    policy = simulation.policy
    plot_ticks(
        ticks,
        png_path,
        f"Simulated: T={policy.target_time:g} s, C={policy.capacity:g} msg/worker/T, "
        f"workers {policy.min_workers}-{policy.max_workers}, window {policy.window:g} s",
    )
    peak = max(ticks, key=lambda tick: tick.wanted)
    trace = simulation.trace
    shown = (
        str(trace) if len(trace.steps) <= 8 else f"{len(trace.steps)} steps up to {trace.peak:g}"
    )
    print(
        f"simulated {ticks[-1].time:.0f} s of {shown} msg/s: peak {peak.wanted} "
        f"workers at t={peak.time:.0f} s, largest backlog {max(t.backlog for t in ticks)} "
        f"messages, {ticks[-1].acked} messages handled"
    )
    print(f"wrote {csv_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
