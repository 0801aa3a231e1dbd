"""A process that burns CPU for a while: the subject of the CPU cap tests.

``python -m tests.busy_process READY_FILE SECONDS`` creates READY_FILE once it runs
(after ``run_main`` started any self-throttle), then spins for SECONDS.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from middlewares.runtime import run_main


def main() -> None:
    """Spin until the time is up."""
    ready, seconds = Path(sys.argv[1]), float(sys.argv[2])
    ready.touch()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


if __name__ == "__main__":
    run_main(main)
