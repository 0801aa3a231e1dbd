"""TestMaster's client: publishes tasks on a rate trace and checks each is answered once.

It is an ordinary client of the InsultFilter protocol (docs/PROTOCOL.md, RabbitMQ): JSON
``{"text"}`` on ``<ns>.filter.tasks`` with ``reply_to`` and a unique ``correlation_id``,
so the master measures it as it would any other client. Each class owns one connection
on its own thread (pika connections are not thread-safe).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass

from pika.adapters.blocking_connection import BlockingChannel

from dynamic.meter import RateSince
from dynamic.trace import RateTrace
from middlewares.rabbitmq.transport import (
    Channel,
    Delivery,
    Names,
    Properties,
    close_quietly,
    connect,
    declare_task_queue,
    task_properties,
)
from middlewares.settings import Settings

log = logging.getLogger("dynamic.load")

# How often the producer catches up with the trace: short against a poll, long against
# one publish.
_PACING_SECONDS = 0.005


def reply_queue(namespace: str) -> str:
    """The queue where TestMaster's answers come back."""
    return f"{namespace}.dynamic.replies"


class ReplyCollector(threading.Thread):
    """Counts the answers to each correlation id, on an exclusive queue of its own."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="reply-collector", daemon=True)
        self._settings = settings
        self.queue = reply_queue(settings.namespace)
        self.counts: Counter[str] = Counter()
        self.error: Exception | None = None
        self._ready = threading.Event()
        self._stop_asked = threading.Event()

    def run(self) -> None:
        """Consume answers until :meth:`stop`."""
        connection = None
        try:
            connection = connect(self._settings, "dynamic-load-replies")
            channel = connection.channel()
            # Exclusive: the broker deletes it when this connection closes, whatever happens.
            channel.queue_declare(self.queue, exclusive=True)
            channel.basic_consume(self.queue, self._on_answer, auto_ack=True)
            self._ready.set()
            while not self._stop_asked.is_set():
                connection.process_data_events(time_limit=0.1)
            # Anything already on its way is still counted.
            connection.process_data_events(time_limit=0.5)
        except Exception as error:  # Reported to the main thread, which decides.
            self.error = error
            self._ready.set()
        finally:
            close_quietly(connection)

    def wait_ready(self, timeout: float) -> None:
        """Block until the queue exists; re-raises the thread's error, if any."""
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the reply queue {self.queue} was not ready in {timeout:g} s")
        if self.error:
            raise self.error

    def answered(self) -> int:
        """Distinct tasks answered so far."""
        return len(self.counts)

    def stop(self) -> None:
        """Stop after a last short drain, and wait for the thread."""
        self._stop_asked.set()
        if self.is_alive():
            self.join()

    def _on_answer(
        self, channel: Channel, method: Delivery, properties: Properties, body: bytes
    ) -> None:
        self.counts[properties.correlation_id or ""] += 1


class Producer(threading.Thread):
    """Publishes tasks at the trace's rate, each confirmed by the broker before it counts.

    Task ids are ``<run>-<n>`` for n = 0 .. published - 1, so the set of ids sent is
    known from :attr:`published` alone. On an overloaded machine it may fall behind the
    trace (it then catches up as fast as it can): :attr:`most_behind` says by how much,
    and :attr:`sent_rate` reports what was really sent.
    """

    def __init__(self, settings: Settings, trace: RateTrace, reply_to: str, run: str) -> None:
        super().__init__(name="producer", daemon=True)
        self._settings = settings
        self._trace = trace
        self._reply_to = reply_to
        self.run_id = run
        self.published = 0
        #: The longest the producer was ever behind the trace, in seconds of its rate.
        self.most_behind = 0.0
        self.error: Exception | None = None
        self._started_at: float | None = None
        self._stop_asked = threading.Event()
        #: Messages per second published since the previous call: the ground truth that
        #: the master's lambda is checked against.
        self.sent_rate = RateSince(lambda: self.published, time.monotonic)

    def task_ids(self) -> list[str]:
        """The ids of every task published so far."""
        return [f"{self.run_id}-{n}" for n in range(self.published)]

    def run(self) -> None:
        """Publish until the trace ends or :meth:`stop`."""
        connection = None
        try:
            connection = connect(self._settings, "dynamic-load-producer")
            channel = connection.channel()
            channel.confirm_delivery()
            names = Names(self._settings.namespace)
            declare_task_queue(channel, names)
            self._started_at = time.monotonic()
            while not self._stop_asked.is_set():
                elapsed = time.monotonic() - self._started_at
                # The slack keeps float sums like 0.1 * 30 from losing the last task.
                due = int(self._trace.messages_by(elapsed) + 1e-6)
                rate = self._trace.rate_at(elapsed)
                if rate > 0:
                    self.most_behind = max(self.most_behind, (due - self.published) / rate)
                while self.published < due and not self._stop_asked.is_set():
                    self._publish(channel, names.filter_tasks)
                if elapsed >= self._trace.duration:
                    break
                self._stop_asked.wait(_PACING_SECONDS)
        except Exception as error:  # Reported to the main thread, which decides.
            self.error = error
        finally:
            close_quietly(connection)

    def stop(self) -> None:
        """Stop publishing and wait for the thread."""
        self._stop_asked.set()
        if self.is_alive():
            self.join()

    def _publish(self, channel: BlockingChannel, queue: str) -> None:
        number = self.published
        body = json.dumps({"text": f"task {number}: eres tonto, muy tonto y feo"}).encode()
        properties = task_properties(f"{self.run_id}-{number}", self._reply_to)
        # With confirms on, this returns once the broker has the task (raises if not).
        channel.basic_publish("", queue, body, properties, mandatory=True)
        self.published += 1


@dataclass(frozen=True)
class Tally:
    """How many tasks were answered exactly once, never, or more than once."""

    published: int
    answered: int
    lost: int
    duplicated: int
    unexpected: int

    @classmethod
    def of(cls, sent: list[str], answers: Counter[str]) -> Tally:
        """Compare the ids sent with the answers counted per id."""
        sent_ids = set(sent)
        return cls(
            published=len(sent),
            answered=sum(1 for task in sent_ids if answers[task] > 0),
            lost=sum(1 for task in sent_ids if answers[task] == 0),
            duplicated=sum(
                count - 1 for task, count in answers.items() if task in sent_ids and count > 1
            ),
            unexpected=sum(count for task, count in answers.items() if task not in sent_ids),
        )

    @property
    def exactly_once(self) -> bool:
        """Every task answered, none twice, nothing foreign."""
        return self.lost == 0 and self.duplicated == 0 and self.unexpected == 0
