"""CPU caps enforced by the kernel: Linux control groups, version 1 or 2, or a systemd scope.

A :class:`CgroupTree` owns one directory per launcher, ``insultbench-<pid>-<token>``,
created under a cgroup the launcher may write (its own cgroup, or the mount's root), and
one child directory per capped process, holding that process's quota. A process is moved
into its cgroup right after it starts; whatever it starts inherits the cgroup, and a
restarted process goes back into the same one. :meth:`CgroupTree.close` moves any process
still inside back to the launcher's cgroup and removes every directory. Trees of launchers
that died without closing (SIGKILL) are removed by the next tree created in the same place.

Version 1 needs the ``cpu`` controller mounted (``cpu.cfs_quota_us``) and, in practice,
root. Version 2 needs a writable cgroup whose children get the ``cpu`` controller
(``cpu.max``): the root cgroup as root, or a subtree delegated to the user. Where neither
works, ``systemd-run --user --scope -p CPUQuota=...`` may, through the user's systemd.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

#: The CFS period of every quota we set: the cap holds over windows this long.
PERIOD_US = 100_000
#: Prefix of every cgroup directory this project creates.
PREFIX = "insultbench-"


class CgroupUnusable(RuntimeError):
    """This kind of cgroup cannot be used here; the message says why, in a few words."""


@dataclass(frozen=True)
class CgroupKind:
    """What differs between cgroup v1 and v2: the name and the quota files."""

    name: str
    quota_file: str

    def write_quota(self, directory: Path, fraction: float) -> None:
        """Hold the processes of ``directory`` to ``fraction`` of one core."""
        quota = max(1000, round(fraction * PERIOD_US))
        if self.name == "cgroup-v2":
            (directory / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
            return
        (directory / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
        (directory / "cpu.cfs_quota_us").write_text(f"{quota}\n")


V1 = CgroupKind("cgroup-v1", "cpu.cfs_quota_us")
V2 = CgroupKind("cgroup-v2", "cpu.max")


def _mounts() -> list[tuple[str, str, list[str]]]:
    """(mount point, file system type, options) of every mounted file system."""
    found = []
    with contextlib.suppress(OSError), open("/proc/self/mounts", encoding="utf-8") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 4:
                found.append((parts[1], parts[2], parts[3].split(",")))
    return found


def _own_path(kind: CgroupKind) -> str:
    """This process's cgroup path in the hierarchy of ``kind`` ("/" when unknown)."""
    with contextlib.suppress(OSError), open("/proc/self/cgroup", encoding="utf-8") as handle:
        for line in handle:
            number, controllers, path = line.rstrip("\n").split(":", 2)
            if kind is V2 and number == "0" and controllers == "":
                return path
            if kind is V1 and "cpu" in controllers.split(","):
                return path
    return "/"


def candidate_dirs(kind: CgroupKind) -> list[Path]:
    """Where a tree of ``kind`` could go: this process's own cgroup, then its parent,
    then the mount's root, in the first hierarchy of ``kind`` that is mounted."""
    for mount, fstype, options in _mounts():
        if (kind is V1 and fstype == "cgroup" and "cpu" in options) or (
            kind is V2 and fstype == "cgroup2"
        ):
            root = Path(mount)
            own = root / _own_path(kind).lstrip("/")
            parent = [own.parent] if own != root else []
            return list(dict.fromkeys([own, *parent, root]))
    return []


def probe(kind: CgroupKind, directory: Path) -> None:
    """Raise :class:`CgroupUnusable` unless a child of ``directory`` can take a quota."""
    if not directory.is_dir():
        raise CgroupUnusable(f"{directory} does not exist")
    test = directory / f"{PREFIX}probe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        test.mkdir()
    except OSError as error:
        raise CgroupUnusable(f"cannot create a cgroup in {directory} ({error.strerror})") from None
    try:
        if not (test / kind.quota_file).exists():
            raise CgroupUnusable(f"{directory} gives its children no cpu controller")
        try:
            kind.write_quota(test, 0.5)
        except OSError as error:
            raise CgroupUnusable(f"cannot set a quota in {directory} ({error.strerror})") from None
    finally:
        with contextlib.suppress(OSError):
            test.rmdir()


def find_usable(kind: CgroupKind, root: Path | None = None) -> Path:
    """The first directory where a tree of ``kind`` works (only ``root`` when given)."""
    candidates = [root] if root is not None else candidate_dirs(kind)
    if not candidates:
        raise CgroupUnusable(f"no {kind.name} hierarchy is mounted")
    reasons = []
    for directory in candidates:
        try:
            probe(kind, directory)
            return directory
        except CgroupUnusable as error:
            reasons.append(str(error))
    raise CgroupUnusable(reasons[0])


def _owner_alive(name: str) -> bool:
    """Whether the launcher that created the tree ``insultbench-<pid>-<token>`` runs."""
    try:
        pid = int(name[len(PREFIX) :].split("-", 1)[0])
    except ValueError:
        return True  # not one of ours (e.g. a probe of another version): leave it
    return psutil.pid_exists(pid)


def _empty_and_remove(directory: Path, home: Path) -> None:
    """Move every process left in ``directory``'s subtree to ``home``, then remove it."""
    if not directory.is_dir():
        return
    for child in [p for p in directory.iterdir() if p.is_dir()]:
        _empty_and_remove(child, home)
    with contextlib.suppress(OSError):
        for pid in (directory / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):  # it may have exited meanwhile
                (home / "cgroup.procs").write_text(pid)
    # The kernel may need a moment to notice the last member left.
    for _ in range(50):
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as error:
            if error.errno != errno.EBUSY:
                raise
            time.sleep(0.02)
    directory.rmdir()


def remove_stale(parent: Path) -> list[Path]:
    """Remove the trees in ``parent`` whose launcher no longer runs; returns them."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            if entry.is_dir() and entry.name.startswith(PREFIX) and not _owner_alive(entry.name):
                with contextlib.suppress(OSError):
                    _empty_and_remove(entry, parent)
                    removed.append(entry)
    return removed


class CgroupTree:
    """One launcher's cgroups: ``<parent>/insultbench-<pid>-<token>/<process name>``."""

    def __init__(self, kind: CgroupKind, parent: Path) -> None:
        self.kind = kind
        self.parent = parent
        remove_stale(parent)
        self.directory = parent / f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.directory.mkdir()

    def cgroup_for(self, name: str, fraction: float) -> Path:
        """The cgroup of the process called ``name``, created with its quota if new."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:200]
        directory = self.directory / safe
        if not directory.is_dir():
            directory.mkdir()
            self.kind.write_quota(directory, fraction)
        return directory

    @staticmethod
    def attach(directory: Path, pid: int) -> None:
        """Move process ``pid`` (and so whatever it starts later) into ``directory``."""
        (directory / "cgroup.procs").write_text(str(pid))

    def close(self) -> None:
        """Move any process still inside out, and remove every directory of the tree."""
        _empty_and_remove(self.directory, self.parent)


def systemd_scope_prefix(fraction: float) -> list[str]:
    """The command prefix that runs a process in a transient user scope with a quota.

    ``systemd-run --scope`` executes the command itself, so the pid is the process's, and
    systemd removes the scope when the process ends.
    """
    return [
        "systemd-run", "--user", "--scope", "--quiet", "--collect",
        "-p", f"CPUQuota={fraction * 100:g}%", "--",
    ]  # fmt: skip


def probe_systemd() -> None:
    """Raise :class:`CgroupUnusable` unless a user scope with a CPU quota can be started."""
    if shutil.which("systemd-run") is None:
        raise CgroupUnusable("systemd-run is not installed")
    try:
        done = subprocess.run(
            [*systemd_scope_prefix(0.5), "true"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise CgroupUnusable(f"systemd-run failed ({error})") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise CgroupUnusable(f"systemd-run --user --scope failed: {reason}")
