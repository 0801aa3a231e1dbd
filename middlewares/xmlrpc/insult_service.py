"""The InsultService process: ``python -m middlewares.xmlrpc.insult_service``.

One :class:`InsultService` serves every client at ``http://<host>:<insult-port>/<ns>/insult``,
a thread per connection. Subscribers are XML-RPC servers exposing ``notify(insult)``; a
:class:`~middlewares.service.Broadcaster` calls them every ``broadcast_interval`` through
a :class:`~middlewares.service.SubscriberSet`, which notifies them in parallel and drops
one after three failed broadcasts in a row.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable, Hashable
from typing import Any

from middlewares.core import InsultStore, Limits, canonical_insult, load_default_insults
from middlewares.runtime import StopSignal
from middlewares.service import Broadcaster, InsultOps, SubscriberSet
from middlewares.settings import Settings, from_args
from middlewares.xmlrpc._common import Remote, build_parser, run_service, serving

#: Longest a subscriber may take to acknowledge one broadcast before it counts as failed.
NOTIFY_TIMEOUT = 2.0
#: Longest subscriber URL accepted; a real one is well under 100 characters.
MAX_URL_CHARS = 512


class InsultService:
    """The insult store and the subscriber list, shared by all clients.

    The store is any :class:`~middlewares.service.InsultOps`: an in-memory set on one
    node, a shared one when the n-node form needs it.
    """

    def __init__(self, store: InsultOps, subscribers: SubscriberSet, limits: Limits) -> None:
        self._store = store
        self._subscribers = subscribers
        self._limits = limits

    def methods(self) -> dict[str, Callable[..., Any]]:
        """The XML-RPC methods, by name."""
        return {
            "add_insult": self.add_insult,
            "get_insults": self.get_insults,
            "random_insult": self.random_insult,
            "subscribe": self.subscribe,
            "unsubscribe": self.unsubscribe,
        }

    def add_insult(self, insult: object) -> bool:
        """Store an insult; True only when it was new. ValueError names a bad insult."""
        return self._store.add(canonical_insult(insult, self._limits))

    def get_insults(self) -> list[str]:
        """Every stored insult, in canonical form."""
        return self._store.all()

    def random_insult(self) -> str:
        """A random stored insult, or "" when there is none."""
        return self._store.random()

    def subscribe(self, url: object) -> bool:
        """Send broadcasts to the XML-RPC server at ``url``; False if it already was."""
        return self._subscribers.add(subscriber_url(url))

    def unsubscribe(self, url: object) -> bool:
        """Stop sending broadcasts to ``url``; False if it was not subscribed."""
        return self._subscribers.remove(subscriber_url(url))


def subscriber_url(value: object) -> str:
    """A subscriber's ``http://host:port/path`` URL, or ValueError saying what is wrong."""
    if not isinstance(value, str) or len(value) > MAX_URL_CHARS:
        raise ValueError(
            f"subscriber url must be an http:// URL string of at most {MAX_URL_CHARS} "
            f"characters, got {type(value).__name__}"
        )
    parts = urllib.parse.urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise ValueError(f"subscriber url must look like http://host:port/path, got {value!r}")
    return value


class _Notifier:
    """The ``notify`` of a :class:`SubscriberSet`: one kept connection per subscriber.

    The set never notifies one subscriber from two threads at once, so a connection is
    never shared.
    """

    def __init__(self, settings: Settings) -> None:
        self._timeout = min(settings.timeout, NOTIFY_TIMEOUT)
        self._remotes: dict[str, Remote] = {}
        self._lock = threading.Lock()

    def notify(self, address: Hashable, insult: str) -> None:
        """Deliver one broadcast; raises when the subscriber does not acknowledge it."""
        url = str(address)
        with self._lock:
            remote = self._remotes.get(url)
            if remote is None:
                remote = self._remotes[url] = Remote(url, "the subscriber is gone", self._timeout)
        remote.call("notify", insult)

    def forget_all_but(self, addresses: list[Hashable]) -> None:
        """Drop the connections of subscribers no longer subscribed.

        Not closed here: one may still be in a hung call, which ends at its timeout; the
        socket closes when its last reference goes.
        """
        live = {str(address) for address in addresses}
        with self._lock:
            for url in [url for url in self._remotes if url not in live]:
                del self._remotes[url]


def serve(settings: Settings) -> None:
    """Serve the InsultService and broadcast until SIGINT or SIGTERM."""
    stop = StopSignal()
    defaults = load_default_insults() if settings.load_defaults else []
    store = InsultStore(defaults, settings.limits)
    notifier = _Notifier(settings)
    subscribers = SubscriberSet(notifier.notify, round_timeout=NOTIFY_TIMEOUT)

    def broadcast(insult: str) -> None:
        notifier.forget_all_but(subscribers.addresses())
        subscribers.broadcast(insult)

    broadcaster = Broadcaster(settings.broadcast_interval, store.random, broadcast)
    service = InsultService(store, subscribers, settings.limits)
    with serving(settings, "insult", service.methods()):
        broadcaster.start()
        stop.wait()
    broadcaster.stop()
    subscribers.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.xmlrpc.insult_service``."""
    parser = build_parser(
        "middlewares.xmlrpc.insult_service",
        "Serve the InsultService at http://HOST:INSULT_PORT/NAMESPACE/insult. "
        "Usually started by `python -m middlewares serve xmlrpc insult`.",
    )
    settings = from_args(parser.parse_args(argv))
    run_service("xmlrpc-insult-service", lambda: serve(settings))


if __name__ == "__main__":
    main()
