"""Workers' acknowledgement counters, sent over a side channel the master reads.

AMQP has no cumulative counters of a queue (without the management plugin), so each
worker reports its own: every :data:`REPORT_INTERVAL` seconds, and once more as it exits,
it publishes ``{"worker": id, "acked": n, "time": t, "final": bool}`` to the fanout
exchange ``<ns>.filter.stats``. ``acked`` is the number of tasks the worker has
acknowledged since it started, ``time`` the Unix time at which that was the count.

The master binds an exclusive queue of its own (bounded, so nothing piles up if it stalls)
and sums the counters with :class:`AckCounter`, interpolated to the moment it read the
task queue, so the two halves of ``arrivals = d(backlog) + d(acked)`` describe the same
instant. Counting where tasks are acknowledged works whoever publishes the tasks.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import pika

from middlewares.rabbitmq._amqp import LINK_ERRORS, close_quietly, connect
from middlewares.settings import Settings

log = logging.getLogger("dynamic.stats")

#: Seconds between two reports of one worker. A tenth of a poll keeps the master's wait
#: for a report newer than its reading short; 10 small messages a second per worker
#: are nothing next to the tasks themselves.
REPORT_INTERVAL = 0.1

#: A worker silent this long is taken for dead: its last count is kept, it is not awaited.
SILENCE_SECONDS = 2.0

#: Reports a master's queue holds at most; older ones are dropped first.
READER_QUEUE_LIMIT = 10_000

# Reports kept per worker to interpolate between; a poll drains about ten of them.
_HISTORY = 32


def stats_exchange(namespace: str) -> str:
    """The fanout exchange workers report to."""
    return f"{namespace}.filter.stats"


@dataclass(frozen=True)
class Report:
    """One worker's counter at one moment."""

    worker: str
    acked: int
    time: float
    final: bool = False

    def encode(self) -> bytes:
        """The report as the JSON the side channel carries."""
        return json.dumps(
            {"worker": self.worker, "acked": self.acked, "time": self.time, "final": self.final}
        ).encode()

    @classmethod
    def decode(cls, body: bytes) -> Report:
        """Parse a report; raises ValueError naming what is wrong."""
        try:
            data = json.loads(body)
            report = cls(
                worker=str(data["worker"]),
                acked=int(data["acked"]),
                time=float(data["time"]),
                final=bool(data.get("final", False)),
            )
        except (ValueError, TypeError, KeyError) as error:
            raise ValueError(f"bad worker report {body[:80]!r}: {error!r}") from None
        if report.acked < 0:
            raise ValueError(f"bad worker report {body[:80]!r}: negative count")
        return report


class AckCounter:
    """The total of every worker's acknowledgements, at any recent moment.

    Pure bookkeeping (no I/O), fed with :meth:`add`. Memory is bounded: a few reports per
    live worker, and a single number for all workers that have exited.
    """

    def __init__(self, silence: float = SILENCE_SECONDS) -> None:
        self._silence = silence
        self._reports: dict[str, deque[Report]] = {}
        self._retired = 0

    def add(self, report: Report) -> None:
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


def _at(history: deque[Report], moment: float) -> float:
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
        exchange = stats_exchange(settings.namespace)
        channel.exchange_declare(exchange, exchange_type="fanout")
        declared = channel.queue_declare(
            "",
            exclusive=True,
            auto_delete=True,
            arguments={"x-max-length": READER_QUEUE_LIMIT, "x-overflow": "drop-head"},
        )
        channel.queue_bind(declared.method.queue, exchange)
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
            self.counter.add(Report.decode(body))
        except ValueError:
            # Counted, not logged per message: a misbehaving reporter must not flood logs.
            self.bad_reports += 1


class StatsReporter(threading.Thread):
    """A worker's end: publishes ``count()`` every :data:`REPORT_INTERVAL` seconds.

    Runs on its own thread with its own connection, because the worker's connection
    belongs to the worker's thread. :meth:`finish` sends the final report.
    """

    def __init__(self, settings: Settings, worker: str, count: Callable[[], int]) -> None:
        super().__init__(name="stats-reporter", daemon=True)
        self._settings = settings
        self._worker = worker
        self._count = count
        self._exchange = stats_exchange(settings.namespace)
        self._done = threading.Event()
        self._connection = connect(settings, "dynamic-worker-stats")
        self._channel = self._connection.channel()
        self._channel.exchange_declare(self._exchange, exchange_type="fanout")

    def run(self) -> None:
        """Report until :meth:`finish`; a lost connection only ends the reporting."""
        try:
            # A first report at once, so the master knows this worker from its start.
            self._send(final=False)
            while not self._done.wait(REPORT_INTERVAL):
                self._send(final=False)
            self._send(final=True)
        except LINK_ERRORS as error:
            log.warning(
                "stopped reporting to %s: %r; the master will undercount", self._exchange, error
            )
        finally:
            close_quietly(self._connection)

    def finish(self, timeout: float = 5.0) -> None:
        """Send the final report (the count must no longer change) and stop."""
        self._done.set()
        self.join(timeout)

    def _send(self, final: bool) -> None:
        report = Report(self._worker, self._count(), time.time(), final)
        self._channel.basic_publish(
            self._exchange,
            "",
            report.encode(),
            pika.BasicProperties(content_type="application/json"),
        )
        # Heartbeats and the broker's flow control are handled while we are idle.
        self._connection.process_data_events(time_limit=0)
