"""CPU caps for a deployment's processes: which process gets which cap, and how it is held.

``--node-cpu FRACTION`` holds every node process of the n-node form to FRACTION of one
core, so that a node is a machine of fixed capacity whatever the host; a node that
starts processes of its own shares its cap with them (cgroup methods). Every capped
process is also pinned to one CPU (round-robin over this process's CPUs), as on a
one-core machine: a quota alone would let a threaded server (XML-RPC, Pyro4) run its
threads on two cores at once and spend much of its quota handing the GIL from core to
core, which made one node cost up to three times as much CPU per request as three.
``--coordinator-cpu FRACTION`` does the same for the coordinating processes (the
master, the filter front, the name server), which are uncapped by default. Clients and
brokers are never capped: the launcher does not start them.

How a cap is held (``--cap-method``, recorded in every speedup result):

- ``cgroup-v2``, ``cgroup-v1``, ``systemd``: the kernel enforces the quota
  (:mod:`middlewares.launch.cgroups`);
- ``self``: each capped process throttles itself (:mod:`middlewares.throttle`),
  which needs no privileges;
- ``cgroup``: the first kernel method that works here; ``auto`` (the default): that, or
  ``self`` when none works, with a one-line notice saying why.

``INSULTBENCH_CGROUP_ROOT`` names the cgroup directory to use (for example a subtree
delegated to your user) instead of looking for one.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from middlewares.contract import ProcessSpec
from middlewares.launch.cgroups import (
    V1,
    V2,
    CgroupTree,
    CgroupUnusable,
    find_usable,
    probe_systemd,
    systemd_scope_prefix,
)
from middlewares.throttle import SELF_CAP_ENV

#: Every value of ``--cap-method``.
CAP_METHODS = ("auto", "cgroup", "self", "cgroup-v2", "cgroup-v1", "systemd")
#: The kernel-enforced methods, in the order ``cgroup`` and ``auto`` try them.
KERNEL_METHODS = ("cgroup-v2", "cgroup-v1", "systemd")
#: Environment variable naming the cgroup directory to use.
CGROUP_ROOT_ENV = "INSULTBENCH_CGROUP_ROOT"
#: Roles of :class:`ProcessSpec` that ``--coordinator-cpu`` caps.
COORDINATOR_ROLES = ("coordinator", "support")
#: All nodes together get at most this share of the machine by default, leaving the
#: rest to the clients, the brokers and the coordinators.
NODES_SHARE_OF_MACHINE = 0.40
#: The default fraction is rounded down to a multiple of this.
FRACTION_STEP = 0.05


class CpuCapError(ValueError):
    """A cap cannot be enforced here; the message says why and what to do."""


def default_node_fraction(max_nodes: int, cores: int) -> float:
    """The node cap that gives ``max_nodes`` nodes together at most 40% of ``cores``,
    rounded down to a multiple of 0.05 (at least 0.05, at most one core)."""
    raw = NODES_SHARE_OF_MACHINE * cores / max(1, max_nodes)
    steps = math.floor(round(raw / FRACTION_STEP, 6))
    return min(1.0, max(FRACTION_STEP, round(steps * FRACTION_STEP, 2)))


@dataclass(frozen=True)
class CpuCaps:
    """The caps of one deployment, as fractions of one core (0: uncapped)."""

    node: float = 0.0
    coordinator: float = 0.0
    method: str = "auto"

    def __post_init__(self) -> None:
        for name in ("node", "coordinator"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise CpuCapError(f"--{name}-cpu {value:g}: give a fraction of one core in (0, 1]")
        if self.method not in CAP_METHODS:
            choices = ", ".join(CAP_METHODS)
            raise CpuCapError(f"--cap-method {self.method!r}: choose one of {choices}")

    @property
    def any(self) -> bool:
        """Whether any process is capped."""
        return bool(self.node or self.coordinator)

    def fraction_for(self, spec: ProcessSpec) -> float:
        """The cap of one process, from its role (0: uncapped)."""
        if spec.role == "node":
            return self.node
        if spec.role in COORDINATOR_ROLES:
            return self.coordinator
        return 0.0

    def to_args(self) -> list[str]:
        """These caps as launcher flags (none when nothing is capped)."""
        if not self.any:
            return []
        return [
            "--node-cpu", f"{self.node:g}", "--coordinator-cpu", f"{self.coordinator:g}",
            "--cap-method", self.method,
        ]  # fmt: skip


def fraction_or_zero(text: str) -> float:
    """argparse type: a fraction of one core in (0, 1], or 0 for no cap."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a fraction of one core in (0, 1], e.g. 0.25, or 0 for no cap"
        )
    return value


def add_arguments(
    parser: argparse.ArgumentParser,
    node_cpu: Callable[[str], object],
    node_default: str = "0, uncapped",
) -> None:
    """Add ``--node-cpu`` (parsed by ``node_cpu``; ``node_default`` says what happens
    without it), ``--coordinator-cpu`` and ``--cap-method``."""
    parser.add_argument(
        "--node-cpu",
        type=node_cpu,
        metavar="FRACTION",
        help="hold every node process to FRACTION of one core, e.g. 0.25, so each node "
        f"is a machine of fixed capacity (default: {node_default})",
    )
    parser.add_argument(
        "--coordinator-cpu",
        type=fraction_or_zero,
        default=0.0,
        metavar="FRACTION",
        help="hold the coordinators (master, filter front, name server) to FRACTION of one "
        "core (default: 0, uncapped)",
    )
    parser.add_argument(
        "--cap-method",
        choices=CAP_METHODS,
        default="auto",
        help="how caps are held: a cgroup (v2, v1 or a systemd user scope; needs root or a "
        "delegated cgroup), self (each process throttles itself, no privileges), or auto: "
        "a cgroup if one works, else self (default: auto)",
    )


@dataclass(frozen=True)
class MethodChoice:
    """The method that will hold the caps, where, and what auto skipped on the way."""

    method: str
    where: str = ""
    notice: str = ""


def _probe(method: str, root: Path | None) -> str:
    """Where ``method`` works, or :class:`CgroupUnusable`."""
    if method == "systemd":
        if root is not None:
            raise CgroupUnusable("a cgroup root was named, and systemd picks its own")
        probe_systemd()
        return "systemd-run --user --scope"
    return str(find_usable(V2 if method == "cgroup-v2" else V1, root))


def choose_method(requested: str, cgroup_root: Path | None = None) -> MethodChoice:
    """Resolve ``requested`` (one of :data:`CAP_METHODS`) to the method used here.

    ``cgroup_root`` (default: ``$INSULTBENCH_CGROUP_ROOT``) is the only place looked at
    for a v1 or v2 cgroup. Raises :class:`CpuCapError` when a named method cannot work.
    """
    if requested == "self":
        return MethodChoice("self")
    if cgroup_root is None and os.environ.get(CGROUP_ROOT_ENV):
        cgroup_root = Path(os.environ[CGROUP_ROOT_ENV])
    order = KERNEL_METHODS if requested in ("auto", "cgroup") else (requested,)
    reasons = []
    for method in order:
        try:
            where = _probe(method, cgroup_root)
        except CgroupUnusable as error:
            reasons.append(f"{method}: {error}")
            continue
        skipped = f"cpu cap: {'; '.join(reasons)}; using {method}" if reasons else ""
        return MethodChoice(method, where, f"{skipped} ({where})" if skipped else "")
    if requested == "auto":
        return MethodChoice(
            "self",
            notice=f"cpu cap: no usable cgroup ({'; '.join(reasons)}); "
            "capped processes throttle themselves (--cap-method self)",
        )
    fix = (
        "use another --cap-method, e.g. auto"
        if os.geteuid() == 0
        else "run as root or with a delegated cgroup, or use --cap-method self"
    )
    raise CpuCapError(f"--cap-method {requested} cannot work here ({'; '.join(reasons)}); {fix}")


@dataclass(frozen=True)
class Placement:
    """How one process is started so that its cap holds: a command prefix, extra
    environment, the CPU it is pinned to, and a step right after it started (moving it
    into its cgroup)."""

    prefix: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    attach: Callable[[int], None] | None = None
    cpu: int | None = None

    def command(self, command: list[str]) -> list[str]:
        """The command line to run."""
        return [*self.prefix, *command]

    def environment(self) -> dict[str, str] | None:
        """The child's environment (None: inherit this process's)."""
        return {**os.environ, **self.env} if self.env else None

    def started(self, process: subprocess.Popen[bytes], name: str) -> None:
        """Apply the cap to the process just started; kill it if that fails."""
        try:
            if self.cpu is not None:
                os.sched_setaffinity(process.pid, {self.cpu})
            if self.attach is not None:
                self.attach(process.pid)
        except OSError as error:
            process.kill()
            process.wait()
            raise CpuCapError(f"could not cap {name}: {error}") from None


class CpuCapper:
    """Holds the processes of one launcher to ``caps`` by ``choice.method``.

    Call :meth:`close` when the processes have stopped: it removes the cgroups.
    """

    def __init__(self, caps: CpuCaps, choice: MethodChoice) -> None:
        self.caps = caps
        self.method = choice.method
        self._cpus = sorted(os.sched_getaffinity(0))
        self._pinned: dict[str, int] = {}
        self._tree: CgroupTree | None = None
        if choice.method in ("cgroup-v1", "cgroup-v2"):
            kind = V1 if choice.method == "cgroup-v1" else V2
            try:
                self._tree = CgroupTree(kind, Path(choice.where))
            except OSError as error:
                raise CpuCapError(
                    f"cannot create a cgroup in {choice.where}: {error.strerror}; "
                    "use --cap-method self"
                ) from None

    def placement(self, spec: ProcessSpec) -> Placement | None:
        """How to start ``spec`` under its cap (None: uncapped)."""
        fraction = self.caps.fraction_for(spec)
        if not fraction:
            return None
        # One CPU per capped process, round-robin and kept across restarts: a node is a
        # one-core machine, whose threads never run on two cores at once.
        cpu = self._pinned.setdefault(spec.name, self._cpus[len(self._pinned) % len(self._cpus)])
        if self.method == "self":
            return Placement(env={SELF_CAP_ENV: f"{fraction:g}"}, cpu=cpu)
        if self.method == "systemd":
            return Placement(prefix=tuple(systemd_scope_prefix(fraction)), cpu=cpu)
        assert self._tree is not None
        directory = self._tree.cgroup_for(spec.name, fraction)
        return Placement(attach=functools.partial(CgroupTree.attach, directory), cpu=cpu)

    def describe(self) -> str:
        """One line for the log: what is capped, how and where."""
        where = f" in {self._tree.directory}" if self._tree else ""
        coordinator = f"{self.caps.coordinator:g}" if self.caps.coordinator else "uncapped"
        return (
            f"cpu caps: nodes {self.caps.node or 'uncapped'}, coordinators {coordinator} "
            f"(fractions of one core, each pinned to one CPU), held by {self.method}{where}"
        )

    def close(self) -> None:
        """Remove what the method created (the cgroup tree); safe to call twice. A tree
        that cannot be removed is reported in one line; the next launcher removes it."""
        tree, self._tree = self._tree, None
        if tree is None:
            return
        try:
            tree.close()
        except OSError as error:
            print(f"warning: could not remove {tree.directory}: {error}", file=sys.stderr)


def open_capper(caps: CpuCaps) -> CpuCapper | None:
    """The capper of ``caps`` (None when nothing is capped), after printing auto's notice."""
    if not caps.any:
        return None
    choice = choose_method(caps.method)
    if choice.notice:
        print(choice.notice, file=sys.stderr)
    return CpuCapper(caps, choice)
