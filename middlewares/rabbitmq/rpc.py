"""Request/reply over RabbitMQ: a service answering one queue, and a caller over direct
reply-to. The InsultService and the echo baseline are both served this way.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import suppress

import pika
from pika.adapters.blocking_connection import BlockingChannel

from middlewares.contract import BrokerUnavailable, ServiceTimeout
from middlewares.messages import bad_messages
from middlewares.rabbitmq.delivery import AckBatch, DeliveryLimit, publish_buffered
from middlewares.rabbitmq.transport import (
    ACK_BATCH,
    DIRECT_REPLY_TO,
    LINK_ERRORS,
    RPC_PREFETCH,
    STOP_CHECK_SECONDS,
    Channel,
    Delivery,
    Properties,
    Returned,
    at_least_once,
    close_quietly,
    connect,
    declare_request_queue,
    link_errors_as_unavailable,
    masked_url,
)
from middlewares.runtime import StopSignal
from middlewares.settings import Settings

log = logging.getLogger(__name__)


class RpcServer:
    """Answers every request of one queue with ``handle(body)``, on one connection.

    A request is acknowledged only after its reply is published (several at a time:
    :class:`~middlewares.rabbitmq.delivery.AckBatch`), so a request held by a process
    that dies goes back to the queue (and, returned too often, to its
    dead-letter queue: see :class:`~middlewares.rabbitmq.delivery.DeliveryLimit`). A
    request without ``reply_to`` cannot be answered: it is logged (bounded) and
    acknowledged (dropped). ``handle`` must not raise: the InsultService's
    :meth:`~middlewares.service.InsultService.dispatch` runs the one per-message step,
    which answers every failure. ``error_body`` builds the answer to a request that was
    set aside. ``on_served`` runs after each answered request (a node's counter).
    Under the at-most-once guarantee requests are taken with auto-ack: one held by a
    process that dies is lost, and its caller times out.
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
        self._on_served = on_served
        #: Requests answered so far (a node also counts them in Redis: ``on_served``).
        self.served = 0
        self._connection = connect(settings, role)
        self._channel = self._connection.channel()
        declare_request_queue(self._channel, queue)
        limit = DeliveryLimit(queue, settings.delivery_limit, durable=False, refusal=error_body)
        limit.declare(self._channel)
        auto_ack = not at_least_once(settings)
        self._acks = AckBatch(self._channel, ACK_BATCH, auto_ack, lambda _: None)
        limit.consume(self._channel, prefetch, self._on_request, auto_ack=auto_ack)

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
                # Nothing more to dispatch: acknowledge what was answered.
                self._acks.flush()

    def close(self) -> None:
        """Close the connection; the broker re-queues the requests not answered yet."""
        if self._connection.is_open:
            # Answered requests left unacknowledged would be answered again.
            with suppress(*LINK_ERRORS):
                self._acks.flush()
        close_quietly(self._connection)

    def _on_request(
        self, channel: Channel, method: Delivery, properties: Properties, body: bytes
    ) -> None:
        if properties.reply_to:
            # Through the default exchange: the reply reaches the queue reply_to names,
            # or nothing (an exchange of that name is never used).
            publish_buffered(
                channel,
                properties.reply_to,
                self._handle(body),
                pika.BasicProperties(correlation_id=properties.correlation_id),
            )
            self.served += 1
            if self._on_served is not None:
                self._on_served()
        else:
            bad_messages.warning(
                "dropped a request on %s without reply_to (correlation_id %r, %d bytes)",
                self._queue,
                properties.correlation_id,
                len(body),
            )
        self._acks.handled(method)


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
        self, channel: Channel, method: Delivery, properties: Properties, body: bytes
    ) -> None:
        # A reply to an earlier call that timed out has another id and is ignored. So is
        # a second reply to this call: a node that answered and died before acknowledging
        # leaves the request to another node, which answers it again (at least once).
        # The first answer wins; the call may already have returned it.
        if properties.correlation_id == self._expected:
            self._reply = body
            self._expected = None

    def _on_return(
        self, channel: Channel, method: Returned, properties: Properties, body: bytes
    ) -> None:
        if properties.correlation_id == self._expected:
            self._returned = True
