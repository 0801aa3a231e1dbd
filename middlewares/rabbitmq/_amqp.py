"""What every RabbitMQ process and client of insultbench shares: names, connections, RPC.

Private to the package: what other packages may use is re-exported by
``middlewares.rabbitmq``. pika connections are not thread-safe, so every class here owns
one connection and must be used from the thread that created it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from urllib.parse import urlparse

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from middlewares import settings as settings_module
from middlewares.contract import BrokerUnavailable, ServiceTimeout
from middlewares.runtime import StopSignal
from middlewares.settings import Settings

log = logging.getLogger(__name__)

#: RabbitMQ's pseudo-queue for replies sent straight to the requesting channel.
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"

#: Seconds between AMQP heartbeats; the broker drops a peer silent for two of them.
HEARTBEAT_SECONDS = 30

#: How often a serving loop looks at its stop signal. Deliveries never wait for it:
#: ``process_data_events`` returns as soon as something was dispatched.
STOP_CHECK_SECONDS = 0.5

#: Unacknowledged requests a service process holds at most.
RPC_PREFETCH = 32

START_HINT = "start it with `docker compose up -d rabbitmq` or `python -m middlewares brokers up`"

#: Errors meaning the connection or channel is gone and must be opened again.
LINK_ERRORS = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError)


@dataclass(frozen=True)
class Names:
    """The broker objects of one namespace; every one of them is declared by this package."""

    namespace: str

    @property
    def insult_requests(self) -> str:
        """Queue of InsultService requests."""
        return f"{self.namespace}.insults.requests"

    @property
    def broadcast(self) -> str:
        """Fanout exchange of the periodic insult broadcast."""
        return f"{self.namespace}.insults.broadcast"

    @property
    def filter_tasks(self) -> str:
        """Durable queue of InsultFilter tasks."""
        return f"{self.namespace}.filter.tasks"

    @property
    def filter_results(self) -> str:
        """Bounded queue holding the newest filtered texts, read by ``get_results``."""
        return f"{self.namespace}.filter.results"

    @property
    def filter_stats(self) -> str:
        """Fanout exchange where every filter worker reports its acknowledged count."""
        return f"{self.namespace}.filter.stats"

    @property
    def echo_requests(self) -> str:
        """Queue of the bare echo service."""
        return f"{self.namespace}.echo.requests"

    def queues(self) -> list[str]:
        """Every queue of the namespace."""
        return [self.insult_requests, self.filter_tasks, self.filter_results, self.echo_requests]

    def exchanges(self) -> list[str]:
        """Every exchange of the namespace."""
        return [self.broadcast, self.filter_stats]


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, fit for messages and logs."""
    password = urlparse(url).password
    return url.replace(f":{password}@", ":***@") if password else url


def _hint(error: Exception) -> str:
    if isinstance(error, pika.exceptions.ProbableAuthenticationError):
        return "the broker refused the user name or password; fix them in AMQP_URL or --amqp-url"
    if isinstance(error, pika.exceptions.ProbableAccessDeniedError):
        return "the broker refused access to the virtual host; check the vhost in AMQP_URL"
    return START_HINT


def connect(settings: Settings, role: str) -> pika.BlockingConnection:
    """A connection to ``settings.amqp_url``; raises :class:`BrokerUnavailable` with the fix.

    ``role`` names the connection in the broker (``rabbitmqctl list_connections
    client_properties``), e.g. ``insultbench/<ns>/filter-worker``.
    """
    parameters = pika.URLParameters(settings.amqp_url)
    parameters.client_properties = {
        "connection_name": f"insultbench/{settings.namespace}/{role}"
    }
    parameters.socket_timeout = settings.timeout
    parameters.stack_timeout = settings.timeout
    parameters.blocked_connection_timeout = settings.timeout
    parameters.heartbeat = HEARTBEAT_SECONDS
    parameters.connection_attempts = 1
    try:
        with _pika_silenced():
            return pika.BlockingConnection(parameters)
    except (pika.exceptions.AMQPError, OSError) as error:
        raise BrokerUnavailable(masked_url(settings.amqp_url), _hint(error)) from None


_silence_lock = threading.Lock()
_silenced_connects = 0
_pika_level = logging.NOTSET


@contextmanager
def _pika_silenced() -> Iterator[None]:
    # A failed connection is reported once, as BrokerUnavailable with the fix; pika
    # would log it again from several loggers, with tracebacks. Counted, so threads
    # connecting at the same time restore the level only when the last one is done.
    global _silenced_connects, _pika_level
    logger = logging.getLogger("pika")
    with _silence_lock:
        if _silenced_connects == 0:
            _pika_level = logger.level
            logger.setLevel(logging.CRITICAL)
        _silenced_connects += 1
    try:
        yield
    finally:
        with _silence_lock:
            _silenced_connects -= 1
            if _silenced_connects == 0:
                logger.setLevel(_pika_level)


def broken_link(settings: Settings, error: Exception) -> BrokerUnavailable:
    """The error a client raises when its connection broke in the middle of a call."""
    hint = f"the connection broke ({type(error).__name__}); {START_HINT}"
    return BrokerUnavailable(masked_url(settings.amqp_url), hint)


@contextmanager
def link_errors_as_unavailable(settings: Settings) -> Iterator[None]:
    """Turn a broken connection or channel into :class:`BrokerUnavailable`."""
    try:
        yield
    except LINK_ERRORS as error:
        raise broken_link(settings, error) from None


def close_quietly(connection: pika.BlockingConnection | None) -> None:
    """Close a connection that may already be broken."""
    if connection is not None and connection.is_open:
        with suppress(*LINK_ERRORS):
            connection.close()


def declare_request_queue(channel: BlockingChannel, queue: str) -> pika.frame.Method:
    """A request queue: transient (requests expire anyway) and shared by competing nodes."""
    return channel.queue_declare(queue)


def declare_broadcast_exchange(channel: BlockingChannel, names: Names) -> None:
    """The fanout exchange; declared by the service and by subscribers, whichever comes first."""
    channel.exchange_declare(names.broadcast, exchange_type="fanout")


def declare_task_queue(channel: BlockingChannel, names: Names) -> None:
    """The durable task queue; declared by clients too, so tasks wait for a late worker."""
    channel.queue_declare(names.filter_tasks, durable=True)


def declare_stats_exchange(channel: BlockingChannel, names: Names) -> None:
    """The workers' report exchange; declared by workers and readers, whichever comes first."""
    channel.exchange_declare(names.filter_stats, exchange_type="fanout")


def task_properties(task_id: str, reply_to: str) -> pika.BasicProperties:
    """The properties of an InsultFilter task: persistent, answered to ``reply_to``.

    The answer carries ``task_id`` as its ``correlation_id``.
    """
    return pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent,
        reply_to=reply_to,
        correlation_id=task_id,
        content_type="application/json",
    )


#: Seconds between two reports of one filter worker on ``<ns>.filter.stats``.
REPORT_INTERVAL = 0.1


@dataclass(frozen=True)
class WorkerReport:
    """One filter worker's count of acknowledged tasks at one moment (``<ns>.filter.stats``).

    Attributes:
        worker: Who reports: ``<host>:<pid>``, unique among running workers.
        acked: Tasks the worker has acknowledged since it started (never goes down).
        time: Unix time at which ``acked`` was the count.
        final: True on the last report, sent as the worker exits.
    """

    worker: str
    acked: int
    time: float
    final: bool = False

    def encode(self) -> bytes:
        """The report as the JSON the exchange carries."""
        return json.dumps(
            {"worker": self.worker, "acked": self.acked, "time": self.time, "final": self.final}
        ).encode()

    @classmethod
    def decode(cls, body: bytes) -> WorkerReport:
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


def settings_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The command line of a service process: every settings flag, plus ``--help``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    settings_module.add_arguments(parser)
    return parser


def quiet_pika() -> None:
    """pika logs every connection at INFO; a service log should show only its own events."""
    logging.getLogger("pika").setLevel(logging.WARNING)


class RpcServer:
    """Answers every request of one queue with ``handle(body)``, on one connection.

    A request is acknowledged only after its reply is published, so a request held by a
    process that dies goes back to the queue. A request without ``reply_to`` cannot be
    answered: it is logged and acknowledged (dropped). ``handle`` must not raise; if it
    does anyway, the error is logged and the requester gets an error reply.
    ``on_served`` runs after each answered request (a node's counter).
    """

    def __init__(
        self,
        settings: Settings,
        queue: str,
        handle: Callable[[bytes], bytes],
        error_body: Callable[[str], bytes],
        role: str,
        prefetch: int = RPC_PREFETCH,
        on_served: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._handle = handle
        self._error_body = error_body
        self._on_served = on_served
        #: Requests answered so far (a node also counts them in Redis: ``on_served``).
        self.served = 0
        self._connection = connect(settings, role)
        self._channel = self._connection.channel()
        declare_request_queue(self._channel, queue)
        self._channel.basic_qos(prefetch_count=prefetch)
        self._channel.basic_consume(queue, self._on_request)

    @property
    def channel(self) -> BlockingChannel:
        """The serving channel; only for declarations made before :meth:`serve`."""
        return self._channel

    def publish_threadsafe(self, exchange: str, body: bytes) -> None:
        """Publish from any thread: the serving thread does it between two requests."""
        self._connection.add_callback_threadsafe(
            lambda: self._channel.basic_publish(exchange, "", body)
        )

    def serve(self, stop: StopSignal) -> None:
        """Answer requests until ``stop`` is set; a lost broker raises BrokerUnavailable."""
        with link_errors_as_unavailable(self._settings):
            while not stop.is_set():
                self._connection.process_data_events(time_limit=STOP_CHECK_SECONDS)

    def close(self) -> None:
        """Close the connection; the broker re-queues the requests not answered yet."""
        close_quietly(self._connection)

    def _on_request(
        self,
        channel: BlockingChannel,
        method: pika.spec.Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        if properties.reply_to:
            try:
                reply = self._handle(body)
            except Exception as error:
                log.exception("request on %s failed", self._queue)
                reply = self._error_body(f"internal error: {type(error).__name__}")
            channel.basic_publish(
                "",
                properties.reply_to,
                reply,
                pika.BasicProperties(correlation_id=properties.correlation_id),
            )
            self.served += 1
            if self._on_served is not None:
                self._on_served()
        else:
            log.warning(
                "dropped a request on %s without reply_to (correlation_id %r, %d bytes)",
                self._queue,
                properties.correlation_id,
                len(body),
            )
        channel.basic_ack(method.delivery_tag)


class RpcCaller:
    """Sends requests to one queue and waits for each reply, over direct reply-to.

    Requests are published ``mandatory`` (a missing queue means no service was ever
    started: that is reported at once) and expire after the call's timeout, so requests
    nobody answers never pile up. A connection that broke while idle (say, the broker
    dropped it for missed heartbeats) is opened again and the request sent once more.
    Repeating is harmless here: the store is a set, so at worst an ``add_insult`` whose
    first attempt did arrive reports False.
    """

    def __init__(self, settings: Settings, queue: str, service: str) -> None:
        """``service`` is the launcher's name of the service: ``insult`` or ``echo``."""
        self._settings = settings
        self._queue = queue
        self._service = service
        self._ids = (f"{uuid.uuid4().hex[:8]}-{n}" for n in itertools.count())
        self._expected: str | None = None
        self._reply: bytes | None = None
        self._returned = False
        self._connection: pika.BlockingConnection | None = None
        self._probe: BlockingChannel | None = None
        self._open()

    def _open(self) -> None:
        close_quietly(self._connection)
        self._connection = connect(self._settings, f"{self._service}-client")
        self._channel = self._connection.channel()
        self._channel.basic_consume(DIRECT_REPLY_TO, self._on_reply, auto_ack=True)
        self._channel.add_on_return_callback(self._on_return)
        self._probe = None

    def call(self, body: bytes, timeout: float | None = None) -> bytes:
        """Send one request and return its reply body.

        Raises :class:`ServiceTimeout` after ``timeout`` (default ``settings.timeout``)
        seconds and :class:`BrokerUnavailable` when the broker or the service is missing.
        """
        timeout = self._settings.timeout if timeout is None else timeout
        correlation_id = next(self._ids)
        try:
            return self._exchange(correlation_id, body, timeout)
        except LINK_ERRORS as error:
            log.info("connection to RabbitMQ broke (%r); opening it again", error)
        self._open()
        with link_errors_as_unavailable(self._settings):
            return self._exchange(correlation_id, body, timeout)

    def _exchange(self, correlation_id: str, body: bytes, timeout: float) -> bytes:
        self._expected, self._reply, self._returned = correlation_id, None, False
        properties = pika.BasicProperties(
            reply_to=DIRECT_REPLY_TO,
            correlation_id=correlation_id,
            expiration=str(max(1, round(timeout * 1000))),
        )
        self._channel.basic_publish("", self._queue, body, properties, mandatory=True)
        return self._await(timeout)

    def _await(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while self._reply is None and not self._returned:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceTimeout(
                    f"no answer on queue {self._queue} within {timeout:g} s; is the "
                    f"{self._service} service running and keeping up?"
                )
            self._connection.process_data_events(time_limit=remaining)
        if self._returned:
            raise BrokerUnavailable(
                f"queue {self._queue} at {masked_url(self._settings.amqp_url)}",
                f"no {self._service} service was started in namespace "
                f"{self._settings.namespace}; start one with `python -m middlewares serve "
                f"rabbitmq {self._service} --namespace {self._settings.namespace}`",
            )
        reply, self._reply = self._reply, None
        return reply

    def consumer_count(self) -> int:
        """How many processes consume the request queue now.

        Declares the queue (as the service does) rather than probing it passively: a
        passive probe of a missing queue costs a channel and a broker warning each time,
        and callers ask this often.
        """
        with link_errors_as_unavailable(self._settings):
            if self._probe is None or not self._probe.is_open:
                self._probe = self._connection.channel()
            declared = declare_request_queue(self._probe, self._queue)
            return declared.method.consumer_count

    def close(self) -> None:
        """Close the connection. Safe to call twice."""
        close_quietly(self._connection)

    def _on_reply(
        self,
        channel: BlockingChannel,
        method: pika.spec.Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        # A reply to an earlier call that timed out has another id and is ignored. So is
        # a second reply to this call: a node that answered and died before acknowledging
        # leaves the request to another node, which answers it again (at least once).
        # The first answer wins; the call may already have returned it.
        if properties.correlation_id == self._expected:
            self._reply = body
            self._expected = None

    def _on_return(
        self,
        channel: BlockingChannel,
        method: pika.spec.Basic.Return,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        if properties.correlation_id == self._expected:
            self._returned = True
