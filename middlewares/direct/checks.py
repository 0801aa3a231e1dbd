"""Argument checks of the direct middlewares' remote methods: ValueError names the problem.

Every remote method checks its arguments with these before anything else, so a bad
request gets a clear refusal and never reaches a queue or a directory.
"""

from __future__ import annotations

from middlewares.runtime import MAX_ID_CHARS

#: Longest a client call may block waiting for results.
MAX_WAIT = 60.0

#: Most texts in one submit_many, task ids in one wait_results, tasks in one pull.
MAX_BATCH = 10_000


def check_list(value: object, name: str) -> list[object]:
    """A list (or tuple) argument of at most :data:`MAX_BATCH` items."""
    if not isinstance(value, list | tuple):
        raise ValueError(f"{name} must be a list, got {type(value).__name__}")
    if len(value) > MAX_BATCH:
        raise ValueError(f"{name} has {len(value)} items, over the limit of {MAX_BATCH}")
    return list(value)


def check_id(value: object, name: str = "task id") -> str:
    """A task or worker id: a non-empty string of at most :data:`MAX_ID_CHARS`."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        raise ValueError(
            f"a {name} must be a non-empty string of at most {MAX_ID_CHARS} characters, "
            f"got {type(value).__name__}"
        )
    return value


def check_seconds(value: object, name: str) -> float:
    """A wait in seconds, from 0 to :data:`MAX_WAIT`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not 0 <= value <= MAX_WAIT:
        raise ValueError(f"{name} must be between 0 and {MAX_WAIT:g} seconds, got {value}")
    return float(value)


def check_count(value: object, name: str, maximum: int) -> int:
    """An integer from 1 to ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValueError(f"{name} must be an integer from 1 to {maximum}, got {value!r}")
    return value


def check_results(value: object) -> dict[str, str]:
    """A worker's results: a dict of task id to censored text."""
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("results must be a dict of task id to censored text")
    return value
