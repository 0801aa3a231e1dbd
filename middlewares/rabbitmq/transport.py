"""RabbitMQ on the wire: the broker objects of a namespace, connections, declarations
and the filter workers' reports.

What other packages may use is re-exported by ``middlewares.rabbitmq``. pika connections
are not thread-safe, so whatever owns one must use it from the thread that created it.
Request/reply over the broker is in :mod:`.rpc`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from urllib.parse import urlparse

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from middlewares.contract import BrokerUnavailable, ServiceError
from middlewares.hints import start_hint
from middlewares.rabbitmq.writes import coalesce_writes
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

#: Answered messages a consumer acknowledges at most with one ``basic.ack`` (multiple):
#: a consumer also acknowledges whenever it has nothing more to dispatch, so this only
#: bounds a long run of deliveries. Half a prefetch window, so the broker can refill
#: the other half while the consumer works (measured: docs/PROTOCOL.md, RabbitMQ).
ACK_BATCH = 16

#: What pika hands a consumer callback ``(channel, method, properties, body)``, named
#: once: the channel, a delivery (or a returned message) and the message's properties.
Channel = BlockingChannel
Delivery = pika.spec.Basic.Deliver
Returned = pika.spec.Basic.Return
Properties = pika.BasicProperties

#: Errors meaning the connection or channel is gone and must be opened again.
LINK_ERRORS = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError)

#: Errors of opening a connection. pika raises AMQPConnectorStackTimeout, which is not an
#: AMQPError, when a port accepts TCP but never speaks AMQP.
CONNECT_ERRORS = (pika.exceptions.AMQPError, AMQPConnectorException, OSError)


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

    def consumed(self) -> list[str]:
        """The queues services consume, each with a delivery limit (see ``.delivery``)."""
        return [self.insult_requests, self.filter_tasks, self.echo_requests]

    @staticmethod
    def retry(queue: str) -> str:
        """The queue of ``queue``'s messages returned by a consumer that died holding them."""
        return f"{queue}.retry"

    @staticmethod
    def dead(queue: str) -> str:
        """The dead-letter queue of ``queue``: messages returned ``delivery_limit`` times."""
        return f"{queue}.dead"

    def queues(self, service: str | None = None) -> list[str]:
        """Every queue of the namespace, or of ``service``."""
        aside = [name for q in self.consumed() for name in (self.retry(q), self.dead(q))]
        return self._of(service, [*self.consumed(), self.filter_results, *aside])

    def exchanges(self, service: str | None = None) -> list[str]:
        """Every exchange of the namespace, or of ``service``."""
        return self._of(service, [self.broadcast, self.filter_stats])

    def _of(self, service: str | None, names: list[str]) -> list[str]:
        if service is None:
            return names
        group = {"insult": "insults"}.get(service, service)
        return [name for name in names if name.startswith(f"{self.namespace}.{group}.")]


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, fit for messages and logs."""
    password = urlparse(url).password
    return url.replace(f":{password}@", ":***@") if password else url


def _hint(error: Exception) -> str:
    if isinstance(error, pika.exceptions.ProbableAuthenticationError):
        return "the broker refused the user name or password; fix them in AMQP_URL or --amqp-url"
    if isinstance(error, pika.exceptions.ProbableAccessDeniedError):
        return "the broker refused access to the virtual host; check the vhost in AMQP_URL"
    if isinstance(error, AMQPConnectorException):
        hint = start_hint("rabbitmq")
        return f"something accepts connections there but does not speak AMQP; {hint}"
    return start_hint("rabbitmq")


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
    coalesce_writes()
    try:
        with _pika_silenced():
            return pika.BlockingConnection(parameters)
    except CONNECT_ERRORS as error:
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
    hint = f"the connection broke ({type(error).__name__}); {start_hint('rabbitmq')}"
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


def at_least_once(settings: Settings) -> bool:
    """Whether ``settings`` ask for confirms, manual acks and persistent tasks (the
    default) rather than at-most-once delivery (docs/PROTOCOL.md, Delivery guarantees)."""
    return settings.guarantee == "at-least-once"


def task_properties(task_id: str, reply_to: str, persistent: bool = True) -> pika.BasicProperties:
    """The properties of an InsultFilter task, answered to ``reply_to``: persistent (at
    least once) or transient (at most once), on the same durable queue either way.

    The answer carries ``task_id`` as its ``correlation_id``.
    """
    return pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent if persistent else pika.DeliveryMode.Transient,
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


def quiet_pika() -> None:
    """pika logs every connection at INFO; a service log should show only its own events."""
    logging.getLogger("pika").setLevel(logging.WARNING)


def to_json(value: object, what: str) -> bytes:
    """``value`` as a JSON body; ServiceError names ``what`` when it cannot be one."""
    try:
        return json.dumps(value).encode()
    except (TypeError, ValueError) as error:
        raise ServiceError(f"{what} cannot be sent as JSON: {error}") from None
