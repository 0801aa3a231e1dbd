"""A RabbitMQ InsultFilter worker process: ``python -m middlewares.rabbitmq.filter_worker``.

Workers compete for tasks on the durable queue ``<ns>.filter.tasks`` (there is no front
process). For each task a worker censors the text and publishes the result once: to
the task's ``reply_to``, with a ``BCC`` header that makes the broker also put it on the
bounded result list ``<ns>.filter.results``. Tasks are acknowledged after their results
are published, several at a time (one ``basic.ack`` with ``multiple``). A worker killed
before the ack loses nothing: the broker hands the tasks to another worker (the
submitter drops the duplicate result, if any), through the retry queue of
:mod:`.delivery`, which sets aside a task returned too often. Under the at-most-once
guarantee the worker takes tasks with auto-ack instead, and a killed worker loses the
tasks the broker had sent it (docs/PROTOCOL.md, Delivery guarantees).

SIGTERM stops a worker gracefully: it finishes and acknowledges the tasks in hand, then
closes its connection, which returns the tasks it had prefetched but not started to the
queue for the other workers. ``--prefetch`` bounds how many tasks it holds at once.

Every worker also reports how many tasks it has acknowledged, every 0.1 s and once more
as it exits, to the fanout exchange ``<ns>.filter.stats``, from a thread and connection
of its own; whoever binds a queue there (the dynamic-scaling master) can measure the
arrival rate of any deployment. Nobody bound: the broker drops the reports.

With ``--node-id`` the worker is one node of the n-node form: the same worker, which
also counts the tasks it answers in Redis, per node, for the harnesses.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from middlewares.cluster.counters import node_counter
from middlewares.core import InsultError
from middlewares.messages import bad_messages, handle_message
from middlewares.rabbitmq.clients import RabbitMqInsultClient
from middlewares.rabbitmq.delivery import AckBatch, DeliveryLimit, publish_buffered
from middlewares.rabbitmq.transport import (
    ACK_BATCH,
    DIRECT_REPLY_TO,
    LINK_ERRORS,
    REPORT_INTERVAL,
    STOP_CHECK_SECONDS,
    Channel,
    Delivery,
    Names,
    Properties,
    WorkerReport,
    at_least_once,
    close_quietly,
    connect,
    declare_stats_exchange,
    declare_task_queue,
    link_errors_as_unavailable,
    quiet_pika,
)
from middlewares.runtime import ServiceProcess, StopSignal, service_main, whole_number
from middlewares.service import FilterStep, error_reply
from middlewares.settings import Settings

log = logging.getLogger("rabbitmq-filter-worker")

#: Tasks a worker holds unacknowledged by default: enough to hide the broker round trip
#: and the batched acknowledgements, few enough that work spreads evenly over several
#: workers (measured: docs/PROTOCOL.md, RabbitMQ).
DEFAULT_PREFETCH = 32

#: The longest a worker waits for the InsultService's list before keeping its last one.
_FETCH_TIMEOUT_SECONDS = 1.0

#: Seconds :meth:`StatsReporter.finish` waits for the final report to be sent.
_FINAL_REPORT_SECONDS = 5.0


def declare_results_queue(channel: BlockingChannel, names: Names, limit: int) -> BlockingChannel:
    """Declare the result list: at most ``limit`` results, the oldest dropped first.

    If the queue already exists with another limit (a deployment started with another
    ``--result-limit``), it is used as it is, with a warning; the broker closes a channel
    whose declaration conflicts, so the returned channel may be a new one.
    """
    arguments = {"x-max-length": limit, "x-overflow": "drop-head"}
    try:
        channel.queue_declare(names.filter_results, arguments=arguments)
        return channel
    except pika.exceptions.ChannelClosedByBroker as error:
        log.warning(
            "%s exists with other settings (%s); using it as it is", names.filter_results, error
        )
        return channel.connection.channel()


class InsultFollower:
    """The insult list of the InsultService of the same namespace, for RefreshingInsults.

    Uses a connection of its own: it is called while the worker's connection is
    dispatching a task, and a pika connection cannot wait for a reply re-entrantly.
    """

    def __init__(self, settings: Settings) -> None:
        # Only the request is bounded by the short fetch timeout: an AMQP handshake on a
        # loaded broker can take longer than that, and a worker must not die at start.
        self._client = RabbitMqInsultClient(
            settings, call_timeout=min(settings.timeout, _FETCH_TIMEOUT_SECONDS)
        )

    def fetch(self) -> list[str] | None:
        """The service's insults, or None when no InsultService runs (use the defaults)."""
        if not self._client.service_running():
            return None
        return self._client.get_insults()

    def close(self) -> None:
        """Close the connection."""
        self._client.close()


class StatsReporter(threading.Thread):
    """Publishes ``count()`` to ``<ns>.filter.stats`` every :data:`REPORT_INTERVAL` seconds.

    Runs on its own thread with its own connection (the worker's connection belongs to
    the worker's thread), so the task path pays nothing but reading an int.
    :meth:`finish` sends the final report. A broken connection ends the reporting, never
    the work.
    """

    def __init__(self, settings: Settings, count: Callable[[], int]) -> None:
        super().__init__(name="stats-reporter", daemon=True)
        self._count = count
        self._worker = f"{socket.gethostname()}:{os.getpid()}"
        self._names = Names(settings.namespace)
        self._done = threading.Event()
        self._connection = connect(settings, "filter-worker-stats")
        with link_errors_as_unavailable(settings):
            self._channel = self._connection.channel()
            declare_stats_exchange(self._channel, self._names)

    def run(self) -> None:
        """Report until :meth:`finish`, then send the final report."""
        try:
            # A first report at once, so a reader knows this worker from its start.
            self._send(final=False)
            while not self._done.wait(REPORT_INTERVAL):
                self._send(final=False)
            self._send(final=True)
        except LINK_ERRORS as error:
            log.warning(
                "stopped reporting to %s (%r); a dynamic-scaling master will undercount",
                self._names.filter_stats,
                error,
            )
        finally:
            close_quietly(self._connection)

    def finish(self) -> None:
        """Send the final report (the count must no longer change) and stop."""
        self._done.set()
        if self.is_alive():
            self.join(_FINAL_REPORT_SECONDS)
        else:
            close_quietly(self._connection)

    def _send(self, final: bool) -> None:
        report = WorkerReport(self._worker, self._count(), time.time(), final)
        self._channel.basic_publish(
            self._names.filter_stats,
            "",
            report.encode(),
            pika.BasicProperties(content_type="application/json"),
        )
        # Heartbeats and the broker's flow control are handled while we are idle.
        self._connection.process_data_events(time_limit=0)


class FilterWorker:
    """Consumes tasks, censors them and publishes each result before acknowledging it.

    ``on_processed(n)`` runs after each acknowledgement of ``n`` tasks (a node's
    counter). The count of
    acknowledged tasks is reported to ``<ns>.filter.stats`` while :meth:`run` runs, and a
    last time by :meth:`close`.
    """

    def __init__(
        self,
        settings: Settings,
        prefetch: int = DEFAULT_PREFETCH,
        on_processed: Callable[[int], None] | None = None,
    ) -> None:
        self._settings = settings
        self._limits = settings.limits
        self._on_processed = on_processed
        self._names = Names(settings.namespace)
        #: Tasks answered so far (a node also counts them in Redis: ``on_processed``).
        self.processed = 0
        self._follower = InsultFollower(settings)
        self._step = FilterStep(settings, self._follower.fetch)
        self._connection = connect(settings, "filter-worker")
        channel = self._connection.channel()
        declare_task_queue(channel, self._names)
        self._channel = declare_results_queue(channel, self._names, settings.result_limit)
        limit = DeliveryLimit(
            self._names.filter_tasks, settings.delivery_limit, durable=True, refusal=error_reply
        )
        limit.declare(self._channel)
        auto_ack = not at_least_once(settings)
        self._acks = AckBatch(self._channel, ACK_BATCH, auto_ack, self._acked)
        limit.consume(self._channel, prefetch, self._on_task, auto_ack=auto_ack)
        self._reporter = StatsReporter(settings, lambda: self.processed)

    def run(self, stop: StopSignal) -> None:
        """Work until ``stop`` is set; a lost broker raises BrokerUnavailable."""
        self._reporter.start()
        with link_errors_as_unavailable(self._settings):
            while not stop.is_set():
                self._connection.process_data_events(time_limit=STOP_CHECK_SECONDS)
                # Nothing more to dispatch: acknowledge what was answered.
                self._acks.flush()

    def close(self) -> None:
        """Close the connections; unstarted prefetched tasks go back to the queue.

        The final report goes out after the task connection is closed, when the count
        can no longer change.
        """
        if self._connection.is_open:
            # Answered tasks left unacknowledged would be handed out (and answered) again.
            with suppress(*LINK_ERRORS):
                self._acks.flush()
        close_quietly(self._connection)
        self._follower.close()
        self._reporter.finish()

    def _on_task(
        self, channel: Channel, method: Delivery, properties: Properties, body: bytes
    ) -> None:
        text, reply = self._process(body)
        self._answer(channel, properties, text is not None, reply)
        self._acks.handled(method)

    def _answer(
        self, channel: Channel, properties: Properties, censored: bool, reply: bytes
    ) -> None:
        """Publish ``reply`` to ``reply_to`` and, if ``censored``, to the result list."""
        reply_to = properties.reply_to
        result_properties = pika.BasicProperties(correlation_id=properties.correlation_id)
        if censored and reply_to and not reply_to.startswith(DIRECT_REPLY_TO):
            # One publish reaches both queues: the broker routes it to the BCC header's
            # queue too (and strips the header), so the result list costs no publish.
            result_properties.headers = {"BCC": [self._names.filter_results]}
            publish_buffered(channel, reply_to, reply, result_properties)
            return
        # Direct reply-to is routed apart from the queues, so it cannot take a BCC.
        if censored:
            publish_buffered(channel, self._names.filter_results, reply, result_properties)
        if reply_to:
            publish_buffered(channel, reply_to, reply, result_properties)
        elif not censored:
            bad_messages.warning(
                "dropped a bad task without reply_to (correlation_id %r): %s",
                properties.correlation_id,
                reply.decode(errors="replace"),
            )

    def _acked(self, count: int) -> None:
        self.processed += count
        if self._on_processed is not None:
            self._on_processed(count)

    def _process(self, body: bytes) -> tuple[str | None, bytes]:
        """The censored text (None for a refused task) and the answer to send."""
        return handle_message(
            body,
            self._limits,
            self._censor,
            lambda _, task, error: (None, error_reply(error)),
        )

    def _censor(self, body: bytes, task: dict[str, Any]) -> tuple[str, bytes]:
        if "text" not in task:
            raise InsultError('task has no "text" field')
        censored = self._step.censor(task["text"])
        return censored, json.dumps({"text": censored}).encode()


def serve(process: ServiceProcess) -> None:
    """Work until SIGINT or SIGTERM."""
    settings, node, prefetch = process.settings, process.node_id, process.args.prefetch
    quiet_pika()
    with ExitStack() as cleanup:
        counters = None if node is None else cleanup.enter_context(
            node_counter(settings, "filter", node)
        )
        worker = FilterWorker(settings, prefetch, None if counters is None else counters.increment)
        # Closed before the node's final count is published.
        cleanup.callback(worker.close)
        log.info("consuming %s with prefetch %d", Names(settings.namespace).filter_tasks, prefetch)
        worker.run(process.stop)
    log.info("stopped after %d tasks", worker.processed)


def _prefetch_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prefetch",
        type=whole_number(1),
        default=DEFAULT_PREFETCH,
        help=f"tasks held unacknowledged at once (default: {DEFAULT_PREFETCH})",
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.rabbitmq.filter_worker [--node-id ID]``."""
    service_main(
        "middlewares.rabbitmq.filter_worker",
        "An InsultFilter worker on RabbitMQ: censors tasks of <ns>.filter.tasks until "
        "SIGINT/SIGTERM; with --node-id, one node of the n-node form (served tasks "
        "counted in Redis).",
        serve,
        add_arguments=_prefetch_argument,
        argv=argv,
    )


if __name__ == "__main__":
    main()
