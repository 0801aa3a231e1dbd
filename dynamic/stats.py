"""The master's end of the filter workers' reports on ``<ns>.filter.stats``.

AMQP has no cumulative counters of a queue (without the management plugin), so every
RabbitMQ filter worker reports its own (a
:class:`middlewares.rabbitmq.transport.WorkerReport`, sent by
``middlewares.rabbitmq.filter_worker``; format in docs/PROTOCOL.md, RabbitMQ): the
number of tasks it has acknowledged since it started, every
:data:`~middlewares.rabbitmq.transport.REPORT_INTERVAL` seconds and once more as it exits.

The master binds an exclusive queue of its own (bounded, so nothing piles up if it stalls)
and sums the counters with :class:`AckCounter`, interpolated to the moment it read the
task queue, so the two halves of ``arrivals = d(backlog) + d(acked)`` describe the same
instant. Counting where tasks are acknowledged works whoever publishes the tasks.
"""

from __future__ import annotations

import time
from collections import deque

from middlewares.rabbitmq.transport import (
    REPORT_INTERVAL,
    Names,
    WorkerReport,
    close_quietly,
    connect,
    declare_stats_exchange,
)
from middlewares.settings import Settings

#: A worker silent this long is taken for dead: its last count is kept, it is not awaited.
SILENCE_SECONDS = 2.0

#: Reports a master's queue holds at most; older ones are dropped first.
READER_QUEUE_LIMIT = 10_000

# Reports kept per worker to interpolate between; a poll drains about ten of them.
_HISTORY = 32


class AckCounter:
    """The total of every worker's acknowledgements, at any recent moment.

    Pure bookkeeping (no I/O), fed with :meth:`add`. Memory is bounded: a few reports per
    live worker, and a single number for all workers that have exited.
    """

    def __init__(self, silence: float = SILENCE_SECONDS) -> None:
        self._silence = silence
        self._reports: dict[str, deque[WorkerReport]] = {}
        self._retired = 0

    def add(self, report: WorkerReport) -> None:
        """Take one report into account; reports of a worker must come in order."""
        history = self._reports.setdefault(report.worker, deque(maxlen=_HISTORY))
        if history and report.time < history[-1].time:
            return
        history.append(report)

    def retire_silent(self, now: float) -> None:
        """Fold workers that said goodbye, or were silent too long, into one total."""
        for worker, history in list(self._reports.items()):
            latest = history[-1]
            if latest.final or now - latest.time > self._silence:
                self._retired += latest.acked
                del self._reports[worker]

    def lagging(self, moment: float) -> list[str]:
        """Workers still running whose newest report is older than ``moment``."""
        return [
            worker
            for worker, history in self._reports.items()
            if history[-1].time < moment and not history[-1].final
        ]

    def live(self) -> int:
        """Workers that are reporting."""
        return len(self._reports)

    def acked_at(self, moment: float) -> float:
        """Acknowledgements of every worker up to ``moment``, interpolated between reports."""
        return self._retired + sum(_at(history, moment) for history in self._reports.values())


def _at(history: deque[WorkerReport], moment: float) -> float:
    """One worker's count at ``moment``: linear between the reports around it."""
    after = next((report for report in history if report.time >= moment), None)
    before = next((report for report in reversed(history) if report.time <= moment), None)
    if after is None or before is None or after.time == before.time:
        # Outside what the reports cover: the nearest report is the best we know.
        return float((after or before or history[-1]).acked)
    share = (moment - before.time) / (after.time - before.time)
    return before.acked + share * (after.acked - before.acked)


class StatsReader:
    """The master's end of the side channel. Use from one thread only (pika)."""

    def __init__(self, settings: Settings) -> None:
        self.counter = AckCounter()
        self._connection = connect(settings, "dynamic-master-stats")
        channel = self._connection.channel()
        names = Names(settings.namespace)
        declare_stats_exchange(channel, names)
        declared = channel.queue_declare(
            "",
            exclusive=True,
            auto_delete=True,
            arguments={"x-max-length": READER_QUEUE_LIMIT, "x-overflow": "drop-head"},
        )
        channel.queue_bind(declared.method.queue, names.filter_stats)
        channel.basic_consume(declared.method.queue, self._on_report, auto_ack=True)
        self.bad_reports = 0

    def acked_at(self, moment: float, workers: int, wait: float = 3 * REPORT_INTERVAL) -> float:
        """Total acknowledgements at ``moment`` (Unix time, at most now).

        Waits up to ``wait`` seconds until ``workers`` workers (those the broker sees
        consuming) have reported, each past ``moment``, so the count includes every
        worker and is interpolated rather than stale.
        """
        deadline = time.monotonic() + wait
        self._connection.process_data_events(time_limit=0)
        while (self.counter.live() < workers or self.counter.lagging(moment)) and (
            remaining := deadline - time.monotonic()
        ) > 0:
            self._connection.process_data_events(time_limit=min(remaining, REPORT_INTERVAL / 4))
        self.counter.retire_silent(time.time())
        return self.counter.acked_at(moment)

    def close(self) -> None:
        """Close the connection; the broker deletes the queue."""
        close_quietly(self._connection)

    def _on_report(
        self,
        channel: object,
        method: object,
        properties: object,
        body: bytes,
    ) -> None:
        try:
            self.counter.add(WorkerReport.decode(body))
        except ValueError:
            # Counted, not logged per message: a misbehaving reporter must not flood logs.
            self.bad_reports += 1
