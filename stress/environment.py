"""The machine and software a study ran on, recorded next to its results.

Broker versions are read from the brokers themselves (Redis ``INFO server``, RabbitMQ's
connection properties), so the report names what actually ran, not what was meant to.
Every probe has a short timeout and reports "unavailable: <reason>" instead of failing.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from middlewares.registry import MIDDLEWARES, get_backend
from middlewares.settings import Settings

PROBE_TIMEOUT_S = 3.0
_REPO = Path(__file__).resolve().parent.parent


def collect_environment(settings: Settings) -> dict[str, Any]:
    """Python, libraries, brokers, CPU, memory and git commit, as a JSON-ready dict."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "libraries": {name: _version(name) for name in _dependencies()},
        "brokers": _broker_versions(settings),
        "git": git_state(),
    }


def _dependencies() -> list[str]:
    """The packages insultbench depends on, as its own metadata lists them."""
    requirements = metadata.requires("insultbench") or []
    names = (re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0] for requirement in requirements)
    return [name for name, spec in zip(names, requirements, strict=True) if "extra ==" not in spec]


def _broker_versions(settings: Settings) -> dict[str, str]:
    """The version each broker reports, by the label of the middleware it serves."""
    versions = {}
    probe = settings.with_changes(timeout=PROBE_TIMEOUT_S)
    for name in MIDDLEWARES:
        backend = get_backend(name)
        version = backend.broker_version(probe)
        if version is not None:
            versions[backend.profile.label] = version
    return versions


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_state() -> dict[str, Any]:
    """The commit the code ran from and whether the working tree had changes."""
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError) as error:
        return {"commit": "unknown", "error": str(error)}


def _git(*args: str) -> str:
    completed = subprocess.run(
        ["git", *args],
        cwd=_REPO,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_S,
        check=True,
    )
    return completed.stdout.strip()
