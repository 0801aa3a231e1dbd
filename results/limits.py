"""The thresholds behind every flag on a run and every verdict of the report, in one
place: the studies flag runs with them, the report explains them with the same numbers."""

from __future__ import annotations

#: A process at this share of what it may use (a core, or its cap) is saturated.
SATURATED = 0.90
#: A load-generating process this busy may be what limits the run.
LOADGEN_CPU_LIMIT_PCT = 90.0
#: Repeats whose throughputs differ by more than this fraction of their mean are suspect.
REPEAT_SPREAD_LIMIT = 0.10
#: An open loop that completes less than this share of its offered rate did not keep up.
RATE_SUSTAINED_SHARE = 0.95
