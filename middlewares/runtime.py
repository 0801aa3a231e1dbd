"""What every service process needs: logging, a stop signal and a clean exit on errors."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from middlewares.contract import BrokerUnavailable
from middlewares.launch.throttle import ThrottleError, throttle_from_environment

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
    line naming the URL and the fix, with exit status 2, instead of a traceback.

    A process the launcher capped with ``--cap-method self`` starts throttling itself
    here, before its main function runs (see :mod:`middlewares.launch.throttle`).
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
    except KeyboardInterrupt:
        status = 0
    sys.exit(status or 0)
