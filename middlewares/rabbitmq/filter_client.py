"""The client of the RabbitMQ InsultFilter: tasks published to a durable queue, results
collected from a reply queue of the client's own.

The client owns one connection, used only by the thread that calls it (pika is not
thread-safe).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from middlewares.contract import (
    BrokerUnavailable,
    FilterClient,
    ServiceError,
    ServiceTimeout,
)
from middlewares.core import InsultError, validate_limit
from middlewares.rabbitmq.confirms import ConfirmWindow
from middlewares.rabbitmq.delivery import publish_buffered
from middlewares.rabbitmq.transport import (
    LINK_ERRORS,
    Channel,
    Delivery,
    Names,
    Properties,
    Returned,
    at_least_once,
    broken_link,
    close_quietly,
    connect,
    declare_task_queue,
    link_errors_as_unavailable,
    masked_url,
    task_properties,
    to_json,
)
from middlewares.settings import Settings

log = logging.getLogger(__name__)

#: How long get_results waits for the next stored result before asking the broker
#: whether any is left.
_RESULTS_QUIET_SECONDS = 0.2


#: Tasks published and not yet confirmed by the broker at most; a publisher past it
#: waits for confirms first.
CONFIRM_WINDOW = 1024


class RabbitMqFilterClient(FilterClient):
    """InsultFilter client: persistent tasks on the durable task queue, results on a private queue.

    Tasks go out under publisher confirms, pipelined (:class:`~.confirms.ConfirmWindow`):
    ``submit`` waits for its task's confirm, ``submit_many`` for none; a task the broker
    refuses or cannot route fails in :meth:`wait`. Results come back on an exclusive
    queue of this client, keyed by correlation id = task id; delivery is at least once,
    so a duplicate result (a worker killed between publishing and acking) is dropped
    here. Under the at-most-once guarantee tasks are transient and published without
    confirms: one the broker drops is only noticed when its result never comes.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._names = Names(settings.namespace)
        self._persistent = at_least_once(settings)
        self._pending: set[str] = set()
        self._done: dict[str, str] = {}
        self._failed: dict[str, str] = {}
        self._connection: pika.BlockingConnection | None = None
        self._open()

    def _open(self) -> None:
        close_quietly(self._connection)
        self._connection = connect(self._settings, "filter-client")
        with link_errors_as_unavailable(self._settings):
            channel = self._connection.channel()
            declare_task_queue(channel, self._names)
            declared = channel.queue_declare("", exclusive=True, auto_delete=True)
            self._reply_queue = declared.method.queue
            channel.basic_consume(self._reply_queue, self._on_result, auto_ack=True)
            channel.add_on_return_callback(self._on_returned)
            self._unconfirmed = self._connection.channel()
            self._unconfirmed.add_on_return_callback(self._on_returned)
            self._confirmed = (
                ConfirmWindow(
                    self._connection,
                    channel,
                    CONFIRM_WINDOW,
                    self._settings.timeout,
                    self._on_nacked,
                )
                if self._persistent
                else None
            )

    @property
    def default_timeout(self) -> float:
        """Seconds :meth:`filter` waits when no timeout is given."""
        return self._settings.timeout

    def _properties(self, task_id: str) -> pika.BasicProperties:
        return task_properties(task_id, self._reply_queue, self._persistent)

    def _recover(self, error: Exception) -> None:
        """Open a new connection after ``error``; raise if pending results went with the old.

        The reply queue is exclusive to a connection, so results of tasks still pending
        can no longer reach this client (they still reach the result list). They are
        reported once and forgotten; the client goes on with the new connection.
        """
        log.info("connection to RabbitMQ broke (%r); opening it again", error)
        lost = len(self._pending)
        self._pending.clear()
        self._open()
        if lost:
            raise BrokerUnavailable(
                masked_url(self._settings.amqp_url),
                f"the connection broke ({type(error).__name__}); the results of {lost} "
                "pending tasks went with it (they still reach the result list); "
                "reconnected",
            ) from None

    def submit(self, text: str) -> str:
        """Queue one text; returns its task id once the broker has confirmed it (at least
        once) or sent it on (at most once)."""
        task_id, sequence = self._send(text, confirmed=True)
        if self._confirmed is not None:
            try:
                self._confirmed.wait_for(sequence, self._settings.timeout)
            except LINK_ERRORS as error:
                self._recover(error)
                raise broken_link(self._settings, error) from None
            if task_id in self._failed:
                raise ServiceError(self._failed.pop(task_id))
        return task_id

    def filter(self, text: str, timeout: float | None = None) -> str:
        """Submit one text and wait for its censored form.

        The result itself proves the task was accepted, so this does not wait for a
        publisher confirm first: one round trip through the broker instead of two. A
        task the broker could not route fails at once; one it lost times out.
        """
        task_id, _ = self._send(text, confirmed=False)
        deadline = time.monotonic() + (self.default_timeout if timeout is None else timeout)
        while (remaining := deadline - time.monotonic()) > 0:
            done = self.wait([task_id], remaining)
            if task_id in done:
                return done[task_id]
        self._pending.discard(task_id)  # nobody will ask for it: drop a late result
        raise ServiceTimeout(f"task {task_id} got no result in time")

    def _send(self, text: str, confirmed: bool) -> tuple[str, int]:
        """Publish one text: its task id and confirm sequence number (0: unconfirmed)."""
        body = to_json({"text": text}, "the text")
        task_id = uuid.uuid4().hex
        try:
            sequence = self._publish(task_id, body, confirmed)
            self._flush()
        except LINK_ERRORS as error:
            self._recover(error)
            with link_errors_as_unavailable(self._settings):
                sequence = self._publish(task_id, body, confirmed)
                self._flush()
        return task_id, sequence

    def _publish(self, task_id: str, body: bytes, confirmed: bool) -> int:
        """Publish one task (written with the next :meth:`_flush`); its confirm sequence
        number, 0 when it is not confirmed."""
        # Pending before publishing: the result may arrive together with the confirm.
        self._pending.add(task_id)
        properties = self._properties(task_id)
        try:
            if confirmed and self._confirmed is not None:
                return self._confirmed.publish(task_id, self._names.filter_tasks, body, properties)
            publish_buffered(
                self._unconfirmed, self._names.filter_tasks, body, properties, mandatory=True
            )
            return 0
        except BaseException:
            self._pending.discard(task_id)
            raise

    def _flush(self) -> None:
        """Write the published tasks, which wait in the output buffer, in one go."""
        self._connection.process_data_events(time_limit=0)

    def _unroutable(self) -> str:
        return f"queue {self._names.filter_tasks} vanished; the text was not queued"

    def _on_nacked(self, task_id: str) -> None:
        if task_id in self._pending:
            self._pending.discard(task_id)
            self._failed[task_id] = "the broker refused the text (nack); it was not queued"

    def _on_returned(
        self, channel: Channel, method: Returned, properties: Properties, body: bytes
    ) -> None:
        if properties.correlation_id in self._pending:
            self._pending.discard(properties.correlation_id)
            self._failed[properties.correlation_id] = self._unroutable()

    def submit_many(self, texts: Sequence[str]) -> list[str]:
        """Queue several texts, written together, without waiting for their confirms: a
        text the broker refuses raises :class:`ServiceError` from :meth:`wait`."""
        bodies = [to_json({"text": text}, "a text") for text in texts]
        task_ids = [uuid.uuid4().hex for _ in bodies]
        try:
            self._publish_batch(task_ids, bodies)
        except LINK_ERRORS as error:
            # Raises if tasks published before the break (this batch's too) went with it.
            self._recover(error)
            with link_errors_as_unavailable(self._settings):
                self._publish_batch(task_ids, bodies)
        return task_ids

    def _publish_batch(self, task_ids: list[str], bodies: list[bytes]) -> None:
        for task_id, body in zip(task_ids, bodies, strict=True):
            self._publish(task_id, body, confirmed=True)
        self._flush()

    def wait(self, task_ids: Sequence[str], timeout: float) -> dict[str, str]:
        """Block until one of ``task_ids`` is done or ``timeout`` passes; hand out what is done.

        A task the filter refused raises :class:`ServiceError` with the filter's message;
        the other results stay buffered for the next call.
        """
        deadline = time.monotonic() + timeout
        polled = False
        while not (ready := [i for i in task_ids if i in self._done or i in self._failed]):
            remaining = deadline - time.monotonic()
            if remaining <= 0 and polled:
                return {}
            # Even with no time left, take in once what has already arrived.
            try:
                self._connection.process_data_events(time_limit=max(0.0, remaining))
            except LINK_ERRORS as error:
                self._recover(error)
            polled = True
        for task_id in ready:
            if task_id in self._failed:
                raise ServiceError(self._failed.pop(task_id))
        return {task_id: self._done.pop(task_id) for task_id in ready}

    def _on_result(
        self, channel: Channel, method: Delivery, properties: Properties, body: bytes
    ) -> None:
        task_id = properties.correlation_id
        if task_id not in self._pending:
            return  # a duplicate of a result already taken in (delivery is at least once)
        self._pending.discard(task_id)
        try:
            answer = json.loads(body)
            if isinstance(answer, dict) and isinstance(answer.get("text"), str):
                self._done[task_id] = answer["text"]
            else:
                self._failed[task_id] = str(answer.get("error", "the filter refused the text"))
        except (ValueError, AttributeError):
            self._failed[task_id] = f"malformed result from the filter: {body[:200]!r}"

    def get_results(self, limit: int = 100) -> list[str]:
        """Up to ``limit`` texts of the filter's result list, newest first, leaving it intact.

        The list is the queue ``<ns>.filter.results``. It is read on a channel of its own
        without acknowledging anything, and closing that channel puts every message back
        in its place; so readers never consume the list.
        """
        try:
            validate_limit(limit, self._settings.result_limit)
        except InsultError as error:
            raise ServiceError(str(error)) from None
        if limit == 0:
            return []
        try:
            bodies = self._snapshot_results()
        except pika.exceptions.AMQPConnectionError as error:
            self._recover(error)
            with link_errors_as_unavailable(self._settings):
                bodies = self._snapshot_results()
        texts = []
        for body in reversed(bodies):
            try:
                texts.append(json.loads(body)["text"])
            except (ValueError, TypeError, KeyError):
                log.warning("skipped a malformed entry of %s", self._names.filter_results)
            if len(texts) == limit:
                break
        return texts

    def _snapshot_results(self) -> list[bytes]:
        """The bodies of the result list, oldest first, read on a channel of their own."""
        channel = self._connection.channel()
        try:
            return self._read_results(channel)
        except pika.exceptions.ChannelClosedByBroker as error:
            # 404: no worker ever ran in this namespace, or the list was deleted meanwhile.
            log.info("cannot read %s: %s", self._names.filter_results, error)
            return []
        finally:
            if channel.is_open:
                channel.close()

    def _read_results(self, channel: BlockingChannel) -> list[bytes]:
        queue = self._names.filter_results
        stored = channel.queue_declare(queue, passive=True).method.message_count
        if stored == 0:
            return []
        channel.basic_qos(prefetch_count=min(stored, 65535))
        bodies: list[bytes] = []
        deadline = time.monotonic() + self._settings.timeout
        for method, _properties, body in channel.consume(
            queue, inactivity_timeout=_RESULTS_QUIET_SECONDS
        ):
            if method is not None:
                bodies.append(body)
                if len(bodies) >= stored:
                    break
            # Quiet: the list may have shrunk (a full list drops its oldest entry for each
            # new result); stop when nothing is left to deliver.
            elif channel.queue_declare(queue, passive=True).method.message_count == 0:
                break
            if time.monotonic() > deadline:
                break
        return bodies

    def close(self) -> None:
        """Close the connection; results still on their way are dropped with the reply queue."""
        close_quietly(self._connection)
