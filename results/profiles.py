"""What the report shows of a middleware, from its backend's profile: the report never
branches on a middleware's name."""

from __future__ import annotations

from functools import cache

from middlewares.contract import Profile
from middlewares.registry import get_backend


@cache
def profile(middleware: str) -> Profile:
    """The :class:`~middlewares.contract.Profile` of the middleware called ``middleware``."""
    return get_backend(middleware).profile
