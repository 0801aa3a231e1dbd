"""Latency histograms: one HDR histogram per client process, merged, never averaged.

Averaging per-process percentiles gives a number that describes no real operation; adding
the histograms' counts gives the exact distribution of every operation of the run. Values
are microseconds with three significant digits, from 1 µs to one minute.
"""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

#: Highest latency a histogram tracks; longer operations are recorded as this value.
MAX_LATENCY_US = 60_000_000
SIGNIFICANT_DIGITS = 3

#: The percentiles every report shows, with the suffix of their column names.
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


def new_histogram() -> HdrHistogram:
    """An empty latency histogram in microseconds."""
    return HdrHistogram(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS)


def record_seconds(histogram: HdrHistogram, seconds: float) -> None:
    """Record one latency given in seconds, clamped to what the histogram tracks."""
    histogram.record_value(min(MAX_LATENCY_US, max(1, round(seconds * 1_000_000))))


def encode(histogram: HdrHistogram) -> str:
    """The histogram as compressed base64 text, to send between processes or store."""
    return histogram.encode().decode("ascii")


def merge(encoded: Iterable[str]) -> HdrHistogram:
    """One histogram holding every value of the encoded histograms."""
    merged = new_histogram()
    for text in encoded:
        merged.decode_and_add(text.encode("ascii"))
    return merged


def summary_ms(histogram: HdrHistogram) -> dict[str, float]:
    """``p50_ms``, ``p90_ms``, ``p99_ms``, ``p999_ms``, ``max_ms`` and ``mean_ms``.

    All are NaN for an empty histogram, so a run that completed nothing cannot be
    mistaken for one with zero latency.
    """
    names = [f"{name}_ms" for name in PERCENTILES] + ["max_ms", "mean_ms"]
    if histogram.get_total_count() == 0:
        return dict.fromkeys(names, float("nan"))
    values = histogram.get_percentile_to_value_dict(list(PERCENTILES.values()))
    result = {f"{name}_ms": values[p] / 1000 for name, p in PERCENTILES.items()}
    result["max_ms"] = histogram.get_max_value() / 1000
    result["mean_ms"] = histogram.get_mean_value() / 1000
    return result
