"""What one client saw during a run: operations sent, confirmed, failed, and when."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from results.histogram import new_histogram, record_seconds

#: How many error messages of each process are kept for the report.
ERROR_SAMPLES = 3


@dataclass
class Tally:
    """What one client saw. Window counts cover ``[warm_end, end)``; totals cover the
    whole run including warm-up and the final drain.

    An operation is *completed* when its reply arrived and was right, and counted in the
    window by the time it completed, so throughput is work the service finished within
    the window. ``sent`` counts the operations issued within the window.
    """

    warm_end: float
    end: float
    sent: int = 0
    completed: int = 0
    errors: int = 0
    timeouts: int = 0
    sent_total: int = 0
    confirmed_total: int = 0
    failed_total: int = 0
    error_samples: list[str] = field(default_factory=list)
    histogram: Any = field(default_factory=new_histogram)
    first_issued: float = math.inf
    last_confirmed: float = -math.inf

    def in_window(self, instant: float) -> bool:
        """Whether ``instant`` lies in the measurement window."""
        return self.warm_end <= instant < self.end

    def issued(self, instant: float, count: int = 1) -> None:
        """``count`` operations were sent at ``instant``."""
        self.sent_total += count
        self.first_issued = min(self.first_issued, instant)
        if self.in_window(instant):
            self.sent += count

    def confirmed(self, started: float, done: float) -> None:
        """The service's right reply to an operation started at ``started`` arrived."""
        self.confirmed_total += 1
        self.last_confirmed = max(self.last_confirmed, done)
        if self.in_window(done):
            self.completed += 1
            record_seconds(self.histogram, done - started)

    def failed(self, instant: float, error: BaseException | str, count: int = 1) -> None:
        """``count`` operations failed (an error answer, a wrong reply, a lost link)."""
        self.failed_total += count
        if self.in_window(instant):
            if isinstance(error, TimeoutError):
                self.timeouts += count
            else:
                self.errors += count
        self.note(error)

    def note(self, error: BaseException | str) -> None:
        """Keep the first few error messages for the report."""
        if len(self.error_samples) < ERROR_SAMPLES:
            text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
            self.error_samples.append(text)
