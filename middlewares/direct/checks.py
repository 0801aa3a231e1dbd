"""Argument checks of the direct middlewares' remote methods: ValueError names the problem.

Every remote method checks its arguments with these before anything else, so a bad
request gets a clear refusal and never reaches a queue or a directory.
"""

from __future__ import annotations

import secrets

from middlewares.core import Limits
from middlewares.runtime import MAX_ID_CHARS
from middlewares.secret import is_secret

#: Longest a client call may block waiting for results.
MAX_WAIT = 60.0

#: Most texts in one submit_many, task ids in one wait_results, tasks in one pull.
MAX_BATCH = 10_000

#: Most characters of text in one lease to a worker, or in one reply of results (one
#: text always goes, whatever its size). On the wire a character takes at most 10 bytes
#: (XML escapes ``&`` as 5, serpent writes some characters as ``\U0001xxxx``, and a
#: one-letter insult becomes the 8 of CENSORED), so such a message stays far below
#: :data:`MAX_MESSAGE_BYTES`.
BATCH_CHARS = 256 * 1024

#: Largest request a direct server reads (an HTTP body, a Pyro4 message) with the default
#: text limit: a client sends at most 512 Ki characters in one submit (XML-RPC, 2.5 MiB
#: once escaped) plus the ids of up to MAX_BATCH texts; anything bigger is refused
#: before it is read.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def message_limit(limits: Limits) -> int:
    """The largest request a direct server reads: :data:`MAX_MESSAGE_BYTES`, or room for
    one text of ``limits.max_text_bytes`` at 10 bytes a character when that is more."""
    return max(MAX_MESSAGE_BYTES, 10 * limits.max_text_bytes + 64 * 1024)


def new_task_id() -> str:
    """A task id nobody can guess (128 random bits): whoever knows an id can collect its
    result, so ids must not be guessable from others."""
    return secrets.token_urlsafe(16)


def check_secret(value: object, expected: str) -> None:
    """PermissionError unless ``value`` is the deployment secret ``expected``."""
    if not is_secret(value, expected):
        raise PermissionError(
            "wrong deployment secret: only the processes of this deployment may use the "
            "worker and node protocol"
        )


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


def check_tasks(value: object) -> dict[str, object]:
    """Tasks a client submits under ids of its own: a dict of at most :data:`MAX_BATCH`
    task ids to texts (the texts are checked by the caller)."""
    if not isinstance(value, dict):
        raise ValueError(f"tasks must be a dict of task id to text, got {type(value).__name__}")
    if len(value) > MAX_BATCH:
        raise ValueError(f"tasks has {len(value)} items, over the limit of {MAX_BATCH}")
    for task_id in value:
        check_id(task_id)
    return value
