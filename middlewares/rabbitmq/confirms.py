"""Publisher confirms, pipelined: many publishes in flight on one channel, each confirmed
(or refused) by the broker later, and waited for only by whoever needs to know.

pika's ``BlockingChannel.confirm_delivery`` makes every ``basic_publish`` wait for its
own confirm: one broker round trip per message. Here confirm mode is turned on at the
level of the channel underneath it (``BlockingChannel._impl``, pika's asynchronous
channel, which the blocking one drives), with a callback that only records the
confirms, so publishing never waits unless the window is full. Confirms and returns
come in while the connection processes events, from the thread that owns it, as with
every other pika callback.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import pika
import pika.frame
from pika.adapters.blocking_connection import BlockingChannel

from middlewares.contract import ServiceTimeout


class ConfirmWindow:
    """Publishes on ``channel`` in confirm mode with up to ``size`` messages unconfirmed;
    waits at most ``timeout`` seconds for room in the window.

    Each message is named by a key (a task id). The broker confirms messages by their
    sequence number on the channel, several at once with ``multiple``; a nacked key is
    handed to ``on_nack``. A message the broker cannot route comes back as a
    ``basic.return`` first (to the channel's return callback) and is then confirmed.
    """

    def __init__(
        self,
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        size: int,
        timeout: float,
        on_nack: Callable[[str], None],
    ) -> None:
        self._connection = connection
        self._timeout = timeout
        self._channel = channel
        self._size = size
        self._on_nack = on_nack
        self._sent = 0
        #: Sequence number -> key of each message not confirmed yet, oldest first.
        self._unconfirmed: OrderedDict[int, str] = OrderedDict()
        # No callback for confirm.select-ok: the broker applies confirm mode to every
        # publish after the select on the channel, so there is nothing to wait for.
        channel._impl.confirm_delivery(ack_nack_callback=self._on_confirm)

    def __len__(self) -> int:
        """How many messages are not confirmed yet."""
        return len(self._unconfirmed)

    def publish(
        self, key: str, routing_key: str, body: bytes, properties: pika.BasicProperties
    ) -> int:
        """Publish ``body`` to the queue ``routing_key`` (``mandatory``) without waiting
        for its confirm; first waits for confirms while the window is full. Returns the
        message's sequence number, for :meth:`wait_for`.

        The message is written to the socket with the next flush (:meth:`flush`, or any
        call that processes the connection's events), so a batch goes out in one write.
        """
        if len(self._unconfirmed) >= self._size:
            self.flush()
            deadline = time.monotonic() + self._timeout
            while len(self._unconfirmed) >= self._size:
                if time.monotonic() > deadline:
                    raise ServiceTimeout(
                        f"the broker confirmed none of {len(self._unconfirmed)} messages in time"
                    )
                self._connection.process_data_events(time_limit=0.1)
        self._sent += 1
        self._unconfirmed[self._sent] = key
        self._channel._impl.basic_publish(
            exchange="", routing_key=routing_key, body=body, properties=properties, mandatory=True
        )
        return self._sent

    def flush(self) -> None:
        """Write what was published to the socket, and take in what has arrived."""
        self._connection.process_data_events(time_limit=0)

    def wait_for(self, sequence: int, timeout: float) -> None:
        """Block until the message ``sequence`` is confirmed or refused; ServiceTimeout
        after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self.flush()
        while sequence in self._unconfirmed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceTimeout("the broker did not confirm the text in time")
            self._connection.process_data_events(time_limit=remaining)

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        if method.multiple:
            # Every message up to the tag; they are oldest first.
            confirmed = []
            while self._unconfirmed and next(iter(self._unconfirmed)) <= method.delivery_tag:
                confirmed.append(self._unconfirmed.popitem(last=False)[1])
        else:
            key = self._unconfirmed.pop(method.delivery_tag, None)
            confirmed = [] if key is None else [key]
        if isinstance(method, pika.spec.Basic.Nack):
            for key in confirmed:
                self._on_nack(key)
