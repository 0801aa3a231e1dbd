"""The live progress of one run: seconds done, ops/s and errors so far.

On a terminal it is one line rewritten in place (a tqdm bar); in a CI log or a file,
where a rewritten line would pile up as noise or never show, it is a plain line every
:data:`PLAIN_INTERVAL_S` seconds.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from tqdm import tqdm

#: Seconds between two plain progress lines when the output is not a terminal.
PLAIN_INTERVAL_S = 5.0


class RunProgress:
    """Shows one run's progress; use as a context manager and pass :meth:`update` to
    :func:`stress.runner.run_once` as its progress callback."""

    def __init__(
        self, label: str, warmup: float, total: float, stream: TextIO | None = None
    ) -> None:
        self.label = label
        self.warmup = warmup
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self._bar: tqdm | None = None
        self._next_line = time.monotonic() + PLAIN_INTERVAL_S
        if self.interactive:
            self._bar = tqdm(
                total=round(total, 1), desc="  run", unit="s", leave=False, file=self.stream,
                bar_format="{desc} {bar} {n:.0f}/{total:.0f} s {postfix}",
            )  # fmt: skip

    def update(self, elapsed: float, total: float, rate: float, errors: int) -> None:
        """Record the state of the run: ``elapsed`` of ``total`` seconds, the live rate
        and the operations that failed so far."""
        phase = "warm-up" if elapsed < self.warmup else "measuring"
        status = f"{phase}, {rate:,.0f} ops/s, {errors} error{'s' if errors != 1 else ''}"
        if self._bar is not None:
            self._bar.n = round(elapsed, 1)
            self._bar.set_postfix_str(status, refresh=True)
            return
        now = time.monotonic()
        if now >= self._next_line and elapsed < total:
            self._next_line = now + PLAIN_INTERVAL_S
            print(f"  {self.label}: {elapsed:.0f}/{total:.0f} s, {status}", file=self.stream,
                  flush=True)  # fmt: skip

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()
