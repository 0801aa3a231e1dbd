"""The deployment secret: what the processes of an XML-RPC or Pyro4 deployment share, so
that only they can take part in its worker and node protocols and register its names.

The launcher puts it in the environment of every process it starts
(:data:`SECRET_ENV`, never a command-line flag, which any local user can read in the
process list). It takes it from its own environment when set, and otherwise from the
user's secret file (:func:`secret_file`), which the first launcher creates with a new
random secret, readable by that user alone, as Erlang does with its cookie: so every
launcher of a user, ``serve`` and ``join`` alike, shares one secret without any setup,
and a process of another user cannot join or hijack its deployments. Clients need no
secret: they only submit, collect and look up.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from middlewares.contract import CannotStart

#: The environment variable that carries the secret to a deployment's processes.
SECRET_ENV = "INSULTBENCH_SECRET"

#: The environment variable naming the secret file, to use another than the default.
SECRET_FILE_ENV = "INSULTBENCH_SECRET_FILE"

#: Random bytes in a new secret (256 bits, as text of 43 URL-safe characters).
SECRET_BYTES = 32

#: Longest secret accepted in a call: real ones are 43 characters.
MAX_SECRET_CHARS = 256


def secret_file() -> Path:
    """Where a user's secret lives: ``$INSULTBENCH_SECRET_FILE`` or ``~/.insultbench/secret``."""
    configured = os.environ.get(SECRET_FILE_ENV)
    return Path(configured) if configured else Path.home() / ".insultbench" / "secret"


def _read_or_create(path: Path) -> str:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_EXCL: of two launchers started at once, one creates and both read the same.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as error:
        raise CannotStart(
            f"cannot create the deployment secret file {path} ({error.strerror}); "
            f"set {SECRET_ENV} or {SECRET_FILE_ENV}"
        ) from None
    else:
        with os.fdopen(descriptor, "w") as created:
            created.write(secrets.token_urlsafe(SECRET_BYTES))
    try:
        value = path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise CannotStart(
            f"cannot read the deployment secret file {path} ({error}); "
            f"set {SECRET_ENV} or {SECRET_FILE_ENV}"
        ) from None
    if not value:
        raise CannotStart(
            f"the deployment secret file {path} is empty; delete it or set {SECRET_ENV}"
        )
    return value


def user_secret() -> str | None:
    """The secret of this user's deployments, for an operator's command (a clean-up):
    the environment's, else the secret file's; None when there is neither."""
    value = os.environ.get(SECRET_ENV)
    if value:
        return value
    try:
        return secret_file().read_text("ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def ensure_secret() -> str:
    """The launcher's secret, put in this process's environment for its children: the
    environment's own, or the user's secret file's (created when missing)."""
    value = os.environ.get(SECRET_ENV) or _read_or_create(secret_file())
    os.environ[SECRET_ENV] = value
    return value


def deployment_secret(what: str) -> str:
    """The secret this process was started with; ``what`` (e.g. ``the filter front``)
    names the process in the :class:`CannotStart` raised when there is none."""
    value = os.environ.get(SECRET_ENV)
    if not value:
        raise CannotStart(
            f"{what} needs the deployment secret in {SECRET_ENV}; start it with "
            "`python -m middlewares serve`, which sets it"
        )
    return value


def is_secret(given: object, expected: str) -> bool:
    """True when ``given`` is the secret ``expected``, compared in constant time."""
    if not isinstance(given, str) or len(given) > MAX_SECRET_CHARS:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())
