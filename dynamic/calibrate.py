"""Measure how fast one worker handles tasks, for ``C = rate x T``.

A closed loop keeps a few tasks in flight to the one worker consuming the queue for a
few seconds, so the worker never waits for work, and times the answers.
"""

from __future__ import annotations

import json
import logging
import time

import pika
from pika.adapters.blocking_connection import BlockingChannel

from middlewares.rabbitmq.transport import (
    DIRECT_REPLY_TO,
    Names,
    close_quietly,
    connect,
    declare_task_queue,
    link_errors_as_unavailable,
)
from middlewares.settings import Settings

log = logging.getLogger("dynamic.calibrate")

#: What the calibration tasks say; the insults make the censor do real work.
CALIBRATION_TEXT = "calibration task: eres tonto, muy tonto y feo"


class CalibrationFailed(RuntimeError):
    """The worker could not be measured; the message says why and what to do."""


def measure_worker_rate(settings: Settings, seconds: float = 3.0, in_flight: int = 8) -> float:
    """Messages per second that the single worker consuming ``<ns>.filter.tasks`` handles.

    Raises:
        CalibrationFailed: when not exactly one worker consumes the queue, or it does
            not answer within ``settings.timeout``.
    """
    names = Names(settings.namespace)
    connection = connect(settings, "dynamic-calibration")
    try:
        with link_errors_as_unavailable(settings):
            return _measure(connection.channel(), names, settings.timeout, seconds, in_flight)
    finally:
        close_quietly(connection)


class _ClosedLoop:
    """Sends a task for every answer until ``seconds`` after the first answer."""

    def __init__(self, channel: BlockingChannel, queue: str, seconds: float) -> None:
        self._channel = channel
        self._queue = queue
        self._seconds = seconds
        self._body = json.dumps({"text": CALIBRATION_TEXT}).encode()
        self._properties = pika.BasicProperties(
            reply_to=DIRECT_REPLY_TO, content_type="application/json"
        )
        self.sent = 0
        self.answers: list[float] = []
        self.sending_until = float("inf")
        channel.basic_consume(DIRECT_REPLY_TO, self._on_answer, auto_ack=True)

    def send(self) -> None:
        """Publish one calibration task."""
        self._channel.basic_publish("", self._queue, self._body, self._properties)
        self.sent += 1

    def _on_answer(self, channel: object, method: object, properties: object, body: bytes) -> None:
        now = time.monotonic()
        self.answers.append(now)
        if len(self.answers) == 1:
            self.sending_until = now + self._seconds
        if now < self.sending_until:
            self.send()


def _measure(
    channel: BlockingChannel, names: Names, timeout: float, seconds: float, in_flight: int
) -> float:
    declare_task_queue(channel, names)
    consumers = channel.queue_declare(names.filter_tasks, passive=True).method.consumer_count
    if consumers != 1:
        raise CalibrationFailed(
            f"calibration needs exactly one worker on {names.filter_tasks}, found {consumers}; "
            "stop the others or give the capacity with --capacity"
        )
    loop = _ClosedLoop(channel, names.filter_tasks, seconds)
    for _ in range(in_flight):
        loop.send()
    started = time.monotonic()
    while len(loop.answers) < loop.sent:
        now = time.monotonic()
        if not loop.answers and now > started + timeout:
            raise CalibrationFailed(
                f"the worker on {names.filter_tasks} answered nothing within {timeout:g} s; "
                "is it running? (see its log)"
            )
        if now > loop.sending_until + timeout:
            raise CalibrationFailed(
                f"{loop.sent - len(loop.answers)} calibration tasks were never answered"
            )
        channel.connection.process_data_events(time_limit=0.05)
    elapsed = loop.answers[-1] - loop.answers[0]
    if elapsed <= 0:
        raise CalibrationFailed("too few answers to time the worker; calibrate for longer")
    rate = (len(loop.answers) - 1) / elapsed
    log.info(
        "one worker handled %d tasks in %.2f s: %.1f msg/s", len(loop.answers) - 1, elapsed, rate
    )
    return rate
