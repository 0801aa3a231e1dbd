"""Lua scripts kept as ``.lua`` files beside the code that runs them, read once."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def lua(package: str, name: str) -> str:
    """The text of ``<package>/lua/<name>.lua``, e.g. ``lua(__package__, "lease_acquire")``."""
    return resources.files(package).joinpath("lua", f"{name}.lua").read_text("utf-8")
