"""Readings of the real task queue ``<ns>.filter.tasks``, from AMQP alone.

* ready messages and consumers: a passive ``queue.declare`` (exact, at the instant);
* acknowledged messages: the workers' reports (:mod:`dynamic.stats`), interpolated to the
  same instant;
* unacknowledged messages: AMQP does not report them, so they are inferred. While tasks
  wait in the queue every consumer holds a full prefetch window (``consumers x
  prefetch``, exact). When none wait, a task is held for about one service time, so by
  Little's law a worker pool finishing ``r`` msg/s holds ``r / worker_rate`` of them,
  never more than ``consumers x prefetch``. With the default prefetch of 1 the
  inference is off by a fraction of a message per worker.
"""

from __future__ import annotations

import logging
import time

import pika.exceptions

from dynamic.meter import Reading
from dynamic.stats import StatsReader
from middlewares.rabbitmq.transport import (
    Names,
    close_quietly,
    connect,
    declare_task_queue,
    link_errors_as_unavailable,
)
from middlewares.settings import Settings

log = logging.getLogger("dynamic.broker")


class RabbitObserver:
    """Reads ``<ns>.filter.tasks`` and the workers' reports. Use from one thread only."""

    def __init__(self, settings: Settings, prefetch: int, worker_rate: float) -> None:
        if prefetch < 1 or worker_rate <= 0:
            raise ValueError(
                f"need prefetch >= 1 and worker_rate > 0, got {prefetch}, {worker_rate}"
            )
        self._settings = settings
        self._queue = Names(settings.namespace).filter_tasks
        self._prefetch = prefetch
        self._worker_rate = worker_rate
        self._connection = connect(settings, "dynamic-master")
        with link_errors_as_unavailable(settings):
            self._channel = self._connection.channel()
            # Declared as clients and workers declare it, so it exists from now on.
            declare_task_queue(self._channel, Names(settings.namespace))
            self._stats = StatsReader(settings)
        self._previous: tuple[float, float] | None = None
        self._unreported_readings = 0
        self._bad_reports_seen = 0

    def observe(self) -> Reading:
        """One reading of the queue, now."""
        with link_errors_as_unavailable(self._settings):
            now = time.time()
            ready, consumers = self._probe()
            acked = self._stats.acked_at(now, consumers)
        completion_rate = 0.0
        if self._previous is not None and now > self._previous[0]:
            completion_rate = max(0.0, (acked - self._previous[1]) / (now - self._previous[0]))
        self._previous = (now, acked)
        window = consumers * self._prefetch
        # Waiting tasks mean full windows; otherwise Little's law (see the module docstring).
        busy = round(completion_rate / self._worker_rate)
        unacked = window if ready > 0 else min(window, busy)
        self._warn_if_unreported(consumers)
        self._warn_of_bad_reports()
        return Reading(now, ready, unacked, acked, consumers)

    def _probe(self) -> tuple[int, int]:
        try:
            declared = self._channel.queue_declare(self._queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as error:
            # Someone deleted the queue: it is empty, and declared again for the workers.
            log.warning("%s is gone (%s); declaring it again", self._queue, error.reply_text)
            self._channel = self._connection.channel()
            declare_task_queue(self._channel, Names(self._settings.namespace))
            return 0, 0
        return declared.method.message_count, declared.method.consumer_count

    def _warn_if_unreported(self, consumers: int) -> None:
        # A worker that just started consumes a moment before its first report, so only
        # a difference lasting three readings is worth a warning (once per episode).
        unreported = consumers - self._stats.counter.live()
        self._unreported_readings = self._unreported_readings + 1 if unreported > 0 else 0
        if self._unreported_readings == 3:
            log.warning(
                "%d consumer(s) of %s do not report their acknowledgements (not a "
                "middlewares.rabbitmq filter worker?); their work is invisible and lambda "
                "will read low",
                unreported,
                self._queue,
            )

    def _warn_of_bad_reports(self) -> None:
        bad = self._stats.bad_reports
        if bad > self._bad_reports_seen:
            log.warning(
                "%d unreadable message(s) on %s ignored; is something else publishing there?",
                bad - self._bad_reports_seen,
                Names(self._settings.namespace).filter_stats,
            )
            self._bad_reports_seen = bad

    def close(self) -> None:
        """Close both connections."""
        self._stats.close()
        close_quietly(self._connection)
