"""The delivery limit of the queues RabbitMQ services consume, which classic queues lack.

Every message goes through :func:`~middlewares.messages.handle_message`, so none should
ever take its consumer down; this is the defence in depth for what still could (a
SIGKILL, the OOM killer, a hang past the heartbeat). RabbitMQ's own limit
(``x-delivery-limit``) exists only for quorum queues, which must be durable and
replicate every message: the request queues are transient, and the filter's task queue
would measure Raft rather than the classic queue every other figure of this project is
about. So the consumers count:

- The broker sets ``redelivered`` on a message it hands out again because the consumer
  holding it died, lost its connection or closed its channel. Such a message is not
  handled at once. It is republished, with its count of such returns (the header
  :data:`RETURNS_HEADER`) raised by one, to the queue's retry queue
  (``<queue>.retry``), and the returned copy is acknowledged. At ``delivery_limit``
  returns it goes to the dead-letter queue ``<queue>.dead`` instead, and its requester,
  if it named a ``reply_to``, is told so.
- Every consumer also consumes the retry queue, one message at a time. A suspect is
  thus handled alone: if it is poison, only it is returned again, while the innocent
  messages that were delivered together with it the first time are handled on their
  own and never reach the limit (they are returned at most once, with the poison).

Returns are rare, so this costs nothing per message: one idle consumer per process,
and a republish per returned message. Under the at-most-once guarantee consumers take
their messages with auto-ack: the broker never hands one out twice, so nothing is
screened (the retry queue is still consumed, for what an earlier at-least-once
deployment of the namespace left there). A consumer stopped gracefully also returns what it
had prefetched but not started; those go through the retry queue too (answered once,
a little later), and the count they carry never matters unless they are returned as
often as the limit.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import pika
from pika.adapters.blocking_connection import BlockingChannel

from middlewares.messages import bad_messages
from middlewares.rabbitmq.transport import Channel, Delivery, Names, Properties

log = logging.getLogger(__name__)

#: How many times the broker returned a message from a consumer that did not acknowledge
#: it; written only on the copies republished to the retry or dead-letter queue.
RETURNS_HEADER = "x-insultbench-returns"

#: What pika hands a consumer callback.
OnMessage = Callable[[Channel, Delivery, Properties, bytes], None]


def returns(properties: Properties) -> int:
    """The count of :data:`RETURNS_HEADER` (0 when absent or not a count)."""
    value = (properties.headers or {}).get(RETURNS_HEADER)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class DeliveryLimit:
    """Consumes one queue and its retry queue, setting aside what came back too often.

    ``durable`` says whether the queue is (the retry queue is the same; the dead-letter
    queue is always durable, so what it holds waits for an operator). ``refusal`` builds
    the body that tells a requester its message was set aside.
    """

    def __init__(
        self, queue: str, limit: int, durable: bool, refusal: Callable[[str], bytes]
    ) -> None:
        self.queue = queue
        self.retry = Names.retry(queue)
        self.dead = Names.dead(queue)
        self._limit = limit
        self._durable = durable
        self._refusal = refusal

    def declare(self, channel: BlockingChannel) -> None:
        """Declare the retry and dead-letter queues (the queue itself is the caller's)."""
        channel.queue_declare(self.retry, durable=self._durable)
        channel.queue_declare(self.dead, durable=True)

    def consume(
        self,
        channel: BlockingChannel,
        prefetch: int,
        on_message: OnMessage,
        auto_ack: bool = False,
    ) -> None:
        """Consume the queue with ``prefetch`` and the retry queue one at a time, handing
        ``on_message`` every message that was not returned.

        RabbitMQ applies a (non-global) prefetch to the consumers started after it, so
        each consumer gets its own. With ``auto_ack`` (at most once) the broker forgets a
        message as it sends it, ignores the prefetch, and never redelivers: every message
        goes to ``on_message``.
        """
        if auto_ack:
            channel.basic_consume(self.queue, on_message, auto_ack=True)
            channel.basic_consume(self.retry, on_message, auto_ack=True)
            return

        def screened(
            channel: Channel, method: Delivery, properties: Properties, body: bytes
        ) -> None:
            if method.redelivered:
                self._set_aside(channel, method, properties, body)
            else:
                on_message(channel, method, properties, body)

        channel.basic_qos(prefetch_count=prefetch)
        channel.basic_consume(self.queue, screened)
        channel.basic_qos(prefetch_count=1)
        channel.basic_consume(self.retry, screened)

    def _set_aside(
        self, channel: Channel, method: Delivery, properties: Properties, body: bytes
    ) -> None:
        """Republish a returned message with its count raised, to the retry queue or, at
        the limit, to the dead-letter queue; then acknowledge the returned copy."""
        count = returns(properties) + 1
        counted = copy.copy(properties)
        counted.headers = {**(properties.headers or {}), RETURNS_HEADER: count}
        if count < self._limit:
            channel.basic_publish("", self.retry, body, counted)
        else:
            channel.basic_publish("", self.dead, body, counted)
            bad_messages.error(
                "set aside a message of %s on %s (correlation_id %r): returned by a dying "
                "consumer %d times",
                self.queue,
                self.dead,
                properties.correlation_id,
                count,
            )
            if properties.reply_to:
                channel.basic_publish(
                    "",
                    properties.reply_to,
                    self._refusal(
                        f"the message was set aside on {self.dead}: it crashed or hung its "
                        f"consumer {count} times"
                    ),
                    pika.BasicProperties(correlation_id=properties.correlation_id),
                )
        channel.basic_ack(method.delivery_tag)


@dataclass
class AckBatch:
    """Acknowledges handled messages of one channel together: one ``basic.ack`` with
    ``multiple`` for up to ``size`` of them, written with the answers buffered before it.

    :meth:`handled` is called once a message is answered (with :func:`publish_buffered`,
    whose frames wait in the connection's output buffer); :meth:`flush` when the
    consumer has nothing more to dispatch (and before it closes its connection, or the
    answered messages would be handed out again). The acknowledgement goes out after the
    answers, in the same write. Delivery tags are per channel and ascending, so
    acknowledging the last one with ``multiple`` acknowledges every earlier one still
    held, including those of the channel's retry-queue consumer (a message set aside was
    acknowledged on its own, and ``multiple`` skips it). ``on_acked(n)`` runs after each
    acknowledgement, with how many it covered. With ``auto_ack`` (the broker forgot the
    messages as it sent them) a flush only writes the answers out.
    """

    channel: BlockingChannel
    size: int
    auto_ack: bool
    on_acked: Callable[[int], None]
    #: Messages handled since the last flush, and the delivery tag of the last of them.
    _held: int = field(default=0, init=False)
    _last: int = field(default=0, init=False)

    def handled(self, method: Delivery) -> None:
        """``method``'s message is answered: acknowledge it now or with the batch."""
        self._held += 1
        self._last = method.delivery_tag
        if self._held >= self.size:
            self.flush()

    def flush(self) -> None:
        """Write the buffered answers and acknowledge every message handled since the
        last flush."""
        if not self._held:
            return
        held, self._held = self._held, 0
        if self.auto_ack:
            # Inside a consumer callback this only writes: pika never re-enters dispatch.
            self.channel.connection.process_data_events(time_limit=0)
        else:
            self.channel.basic_ack(self._last, multiple=True)
        self.on_acked(held)


def publish_buffered(
    channel: BlockingChannel,
    routing_key: str,
    body: bytes,
    properties: Properties,
    mandatory: bool = False,
) -> None:
    """Publish ``body`` through the default exchange to ``routing_key``, leaving its frames
    in the connection's output buffer until the next write (:meth:`AckBatch.flush`, or
    any call that processes the connection's events).

    pika's blocking ``basic_publish`` writes to the socket and polls it after every
    message; answers published here go out together with their batch's acknowledgement.
    It publishes on the asynchronous channel the blocking one drives (``_impl``), which
    is all the blocking ``basic_publish`` does besides that write.
    """
    channel._impl.basic_publish(
        exchange="", routing_key=routing_key, body=body, properties=properties, mandatory=mandatory
    )
