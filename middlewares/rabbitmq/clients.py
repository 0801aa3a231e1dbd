"""Clients of the RabbitMQ InsultService and echo baseline (the filter's client is in
:mod:`.filter_client`).

Each client owns one connection, used only by the thread that calls it (pika is not
thread-safe); a broadcast subscription runs on a thread with a connection of its own.
"""

from __future__ import annotations

import json
import logging
import threading
from contextlib import suppress

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from middlewares.broadcast import BrokerSubscriptionClient
from middlewares.contract import (
    BroadcastCallback,
    BrokerUnavailable,
    EchoClient,
    ServiceError,
)
from middlewares.rabbitmq.rpc import RpcCaller
from middlewares.rabbitmq.transport import (
    LINK_ERRORS,
    Channel,
    Delivery,
    Names,
    Properties,
    broken_link,
    close_quietly,
    connect,
    declare_broadcast_exchange,
    to_json,
)
from middlewares.settings import Settings

log = logging.getLogger(__name__)


def _parse_reply(body: bytes) -> object:
    """The result of an ``{"ok", "result"}`` reply; raises ServiceError for an error reply."""
    try:
        reply = json.loads(body)
        ok = reply["ok"]
    except (ValueError, TypeError, KeyError):
        raise ServiceError(f"malformed reply from the service: {body[:200]!r}") from None
    if not ok:
        raise ServiceError(str(reply.get("error", "the service refused the request")))
    return reply.get("result")


def _request(op: str, *args: object) -> bytes:
    """The JSON body of an InsultService request."""
    return to_json({"op": op, "args": list(args)}, "the insult")


#: The requests without arguments never change: encoded once, not on every call.
_GET_INSULTS = _request("get_insults")
_RANDOM_INSULT = _request("random_insult")


class RabbitMqInsultClient(BrokerSubscriptionClient):
    """InsultService client: JSON requests over direct reply-to, subscriptions on a thread."""

    def __init__(self, settings: Settings, call_timeout: float | None = None) -> None:
        """``call_timeout``: seconds a request waits for its answer (default
        ``settings.timeout``, which always bounds connecting)."""
        self._names = Names(settings.namespace)
        self._settings = settings
        self._call_timeout = call_timeout
        self._rpc = RpcCaller(settings, self._names.insult_requests, "insult")

    def _call(self, body: bytes) -> object:
        return _parse_reply(self._rpc.call(body, self._call_timeout))

    def add_insult(self, insult: str) -> bool:
        """Store an insult; True only when it was new."""
        return bool(self._call(_request("add_insult", insult)))

    def get_insults(self) -> list[str]:
        """Every stored insult."""
        return list(self._call(_GET_INSULTS))  # type: ignore[call-overload]

    def random_insult(self) -> str:
        """A random stored insult, or "" when the store is empty."""
        return str(self._call(_RANDOM_INSULT))

    def service_running(self) -> bool:
        """True when at least one InsultService process consumes the request queue."""
        return self._rpc.consumer_count() > 0

    def subscribe(self, callback: BroadcastCallback) -> None:
        """Receive every broadcast on a thread of this client; replaces an earlier callback."""
        self.unsubscribe()
        subscription = _Subscription(self._settings, self._names, callback)
        subscription.start()
        subscription.wait_ready()
        self._subscription = subscription

    def _close_connection(self) -> None:
        self._rpc.close()


class _Subscription(threading.Thread):
    """One broadcast subscription: an exclusive, server-named queue bound to the fanout."""

    def __init__(self, settings: Settings, names: Names, callback: BroadcastCallback) -> None:
        super().__init__(name="rabbitmq-subscriber", daemon=True)
        self._settings = settings
        self._names = names
        self._callback = callback
        self._ready = threading.Event()
        self._error: Exception | None = None
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def run(self) -> None:
        """Set up the queue in this thread (pika connections stay in their thread), then consume."""
        try:
            self._connection = connect(self._settings, "insult-subscriber")
            self._channel = self._connection.channel()
            declare_broadcast_exchange(self._channel, self._names)
            queue = self._channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
            self._channel.queue_bind(queue, self._names.broadcast)
            self._channel.basic_consume(queue, self._deliver, auto_ack=True)
        except Exception as error:
            self._error = error
            close_quietly(self._connection)
            return
        finally:
            self._ready.set()
        try:
            self._channel.start_consuming()
        except LINK_ERRORS as error:
            log.warning("broadcast subscription ended: the connection broke (%r)", error)
        finally:
            close_quietly(self._connection)

    def wait_ready(self) -> None:
        """Return once broadcasts are being received; raise what prevented it."""
        if not self._ready.wait(self._settings.timeout):
            self.stop()
            raise BrokerUnavailable(self._names.broadcast, "subscribing took too long")
        if self._error is not None:
            if isinstance(self._error, BrokerUnavailable):
                raise self._error
            raise broken_link(self._settings, self._error)

    def stop(self) -> None:
        """Stop consuming from any thread and wait for the thread to close its connection."""
        connection, channel = self._connection, self._channel
        if connection is not None and channel is not None and connection.is_open:
            # If the connection is closing already, the thread is ending on its own.
            with suppress(*LINK_ERRORS):
                connection.add_callback_threadsafe(channel.stop_consuming)
        self.join(self._settings.timeout)

    def _deliver(
        self, channel: Channel, method: Delivery, properties: Properties, body: bytes
    ) -> None:
        try:
            self._callback(body.decode("utf-8", errors="replace"))
        except Exception:
            log.exception("broadcast callback failed; the subscription goes on")


class RabbitMqEchoClient(EchoClient):
    """Echo client: the bare request/reply round trip over direct reply-to."""

    def __init__(self, settings: Settings) -> None:
        self._rpc = RpcCaller(settings, Names(settings.namespace).echo_requests, "echo")

    def echo(self, payload: str) -> str:
        """Send ``payload`` and return the reply."""
        return self._rpc.call(payload.encode()).decode()

    def close(self) -> None:
        """Close the connection."""
        self._rpc.close()
