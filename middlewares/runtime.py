"""The one skeleton of every service process: its command line, node id, log role, stop
signal and exit status.

Every service module of every middleware ends the same way::

    def main(argv: list[str] | None = None) -> None:
        service_main(__name__ ... , serve, argv=argv)

and its ``serve(process)`` gets a :class:`ServiceProcess`: the settings, the node id (or
None in the one-node form) and the stop signal set by SIGINT or SIGTERM. An unreachable
broker ends the process with one line and status 2, a service that cannot start (a taken
port, a held name) with one line and status 1, and a stop signal with status 0.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

from middlewares import settings as settings_module
from middlewares.contract import BrokerUnavailable, CannotStart
from middlewares.settings import Settings
from middlewares.throttle import ThrottleError, throttle_from_environment

#: The exit statuses of every command of the suite (README, "Exit statuses"): a run
#: that failed, a usage error or an unreachable broker, and a run cut short by Ctrl-C.
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Longest node, worker or task id: ids end up in key, queue and registered names.
MAX_ID_CHARS = 100


def parse_node_id(text: str) -> str:
    """An argparse type for ``--node-id`` and ``--worker-id``: one word of 1 to
    :data:`MAX_ID_CHARS` characters."""
    if not 0 < len(text) <= MAX_ID_CHARS or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(
            f"a node id is one word of 1 to {MAX_ID_CHARS} characters, got {text!r}"
        )
    return text


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def usage_error(message: str) -> NoReturn:
    """End a command that cannot run as asked: ``error: <message>``, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit status 2: the usage of a
    command with twenty settings would bury the one line that says what is wrong."""

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message>`` and where the options are, then exit 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def writable_directory(path: Path) -> Path:
    """Create directory ``path`` if needed and prove a file can be written in it, before
    a command spends any time measuring; raises ValueError with one line otherwise."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a directory; give --out a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise ValueError(f"cannot write in {path}: {error.strerror or error}") from None
    return path


def configure_logging(name: str) -> logging.Logger:
    """Log one line per event to stderr, prefixed with the process's role."""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    return logging.getLogger(name)


class StopSignal:
    """Set by SIGINT or SIGTERM, so a process can finish what it holds and then exit.

    Must be created in the main thread (Python only delivers signals there).
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        threading.Thread(target=self._relay, name="stop-signal", daemon=True).start()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        # A handler runs in the main thread between two bytecodes, possibly while that
        # thread holds the event's lock (inside wait) or inside this very handler (Ctrl-C
        # then the launcher's SIGTERM). Event.set() would then deadlock, so the handler
        # takes no lock: it only wakes a thread that sets the event.
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_write, b"\0")

    def _relay(self) -> None:
        os.read(self._wake_read, 1)
        self._event.set()

    def is_set(self) -> bool:
        """True once a stop was asked for."""
        return self._event.is_set()

    def set(self) -> None:
        """Ask for a stop from inside the process."""
        self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until a stop is asked for or ``timeout`` passes; True if asked."""
        return self._event.wait(timeout)


def run_main(main: Callable[[], int | None]) -> None:
    """Run a process's main function and exit with its status.

    An unreachable broker is the one error a user can fix themselves, so it becomes one
    line naming the URL and the fix, with exit status 2, instead of a traceback; a
    service that cannot start says why in one line, with exit status 1.

    A process the launcher capped with ``--cap-method self`` starts throttling itself
    here, before its main function runs (see :mod:`middlewares.throttle`).
    """
    try:
        throttle_from_environment()
    except ThrottleError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    try:
        status = main()
    except BrokerUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except CannotStart as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        status = 0
    sys.exit(status or 0)


@dataclass(frozen=True)
class ServiceProcess:
    """What the skeleton hands a service process's ``serve``.

    Attributes:
        settings: From the environment, then the flags.
        node_id: ``--node-id``: this process is that node of the n-node form (None: the
            one-node form, or a process that takes no node id).
        stop: Set by SIGINT or SIGTERM.
        args: Every parsed flag, for the process's own (see ``add_arguments``).
    """

    settings: Settings
    node_id: str | None
    stop: StopSignal
    args: argparse.Namespace


#: Whether a service process takes ``--node-id``: not at all, optionally (the one-node
#: form without it), or always (every Redis process is a named consumer).
NodeIdRule = Literal["none", "optional", "required"]


def role_name(module: str, node_id: str | None) -> str:
    """The log role of a service process: ``middlewares.redis.filter_worker`` with node
    ``n1`` logs as ``redis-filter-worker[n1]``."""
    role = module.removeprefix("middlewares.").replace(".", "-").replace("_", "-")
    return role if node_id is None else f"{role}[{node_id}]"


def service_main(
    module: str,
    description: str,
    serve: Callable[[ServiceProcess], None],
    node_id: NodeIdRule = "optional",
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: list[str] | None = None,
) -> None:
    """Parse the command line of service module ``module``, then run ``serve`` with
    logging, a stop signal and a clean exit status (see :func:`run_main`)."""
    parser = CommandParser(prog=f"python -m {module}", description=description)
    if node_id != "none":
        parser.add_argument(
            "--node-id",
            type=parse_node_id,
            metavar="ID",
            required=node_id == "required",
            help="run as node ID of the n-node form: shared state and per-node counters "
            "in Redis; a restart with the same id takes back what the node held"
            + ("" if node_id == "required" else " (default: the one-node form)"),
        )
    if add_arguments is not None:
        add_arguments(parser)
    settings_module.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = settings_module.from_args(args)
    except ValueError as error:
        parser.error(str(error))
    node = getattr(args, "node_id", None)
    # A worker of the one-node form has a stable worker id instead of a node id.
    configure_logging(role_name(module, node or getattr(args, "worker_id", None)))
    stop = StopSignal()
    run_main(lambda: serve(ServiceProcess(settings, node, stop, args)))
