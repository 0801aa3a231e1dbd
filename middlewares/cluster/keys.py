"""Every Redis key name of insultbench, in one place (``docs/PROTOCOL.md`` lists the same).

Two users share them: the n-node form of every middleware keeps its shared state here
(the store, the broadcast lease, the subscribers, the per-node counters), and the Redis
middleware's services run on the lists of :class:`QueueKeys`. Everything of a namespace
starts with ``<ns>:``, so a namespace is deleted by a SCAN of that prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

#: Longest reply address accepted, in characters; real ones are far shorter.
MAX_REPLY_KEY_CHARS = 512

#: The key group of each service: ``<ns>:<group>:...``.
GROUPS = {"insult": "insults", "filter": "filter", "echo": "echo"}


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one Redis service's queue, all under ``prefix`` (e.g. ``<ns>:filter``).

    Attributes:
        prefix: The service's key prefix.
        queue: The list clients LPUSH messages on and consumers take them from (the right).
        counters: Hash of the messages each consumer acknowledged, by consumer id: the
            per-node counters of the n-node form.
        presence: Set of the consumers announced alive, each with its host (see
            :mod:`middlewares.cluster.presence`).
    """

    prefix: str
    queue: str
    counters: str
    presence: str

    @property
    def consumers(self) -> str:
        """Set of the ids of the consumers that may hold messages."""
        return f"{self.prefix}:consumers"

    def processing(self, consumer_id: str) -> str:
        """List of the messages ``consumer_id`` holds and has not answered yet."""
        return f"{self.prefix}:processing:{consumer_id}"

    def heartbeat(self, consumer_id: str) -> str:
        """Key that exists while ``consumer_id`` is alive (it has a short TTL)."""
        return f"{self.prefix}:heartbeat:{consumer_id}"

    @property
    def reply_area(self) -> str:
        """The prefix of the service's reply lists (see :meth:`Keys.is_reply_key`)."""
        return f"{self.prefix}:replies:"

    def replies(self, client_id: str) -> str:
        """A client's private reply list."""
        return self.reply_area + client_id

    @property
    def redeliveries(self) -> str:
        """Hash: SHA-1 (hex) of a message -> how often it was re-queued from a consumer
        that died or hung holding it. Only messages re-queued so are in it."""
        return f"{self.prefix}:redeliveries"

    @property
    def dead(self) -> str:
        """List of the messages set aside, newest first, after they were re-queued from a
        dying consumer ``delivery_limit`` times (the dead-letter list)."""
        return f"{self.prefix}:dead"


@dataclass(frozen=True)
class Keys:
    """Every Redis name of one namespace."""

    namespace: str

    # -- the n-node form's shared state, whatever the middleware -------------------------

    @property
    def store(self) -> str:
        """Set of the canonical insults (the Redis middleware's store in either form)."""
        return f"{self.namespace}:insults:store"

    @property
    def lease(self) -> str:
        """String holding the id of the node that broadcasts, with a TTL."""
        return f"{self.namespace}:insults:broadcaster"

    @property
    def subscribers(self) -> str:
        """Hash of subscriber address -> consecutive failed broadcasts (direct middlewares)."""
        return f"{self.namespace}:insults:subscribers"

    def counters(self, service: str) -> str:
        """Hash of the requests or tasks each node of ``service`` served, by node id."""
        return f"{self.namespace}:stats:{service}"

    def presence(self, service: str) -> str:
        """Set of the ids of the live nodes of ``service``; ``<this>:<id>`` holds each
        one's host, with a short expiry (:mod:`middlewares.cluster.presence`)."""
        return f"{self.namespace}:nodes:{service}"

    @property
    def front_tasks(self) -> str:
        """Hash of task id -> text: the tasks an n-node filter front (XML-RPC, Pyro4)
        accepted and whose results were not collected yet, its journal."""
        return f"{self.namespace}:front:tasks"

    def shared_state(self, service: str | None = None) -> list[str]:
        """The keys an n-node deployment of a direct or RabbitMQ middleware leaves (of
        ``service`` only, if given)."""
        insult = [self.store, self.lease, self.subscribers]
        by_service = {
            "insult": [*insult, self.counters("insult"), self.presence("insult")],
            "filter": [self.counters("filter"), self.presence("filter"), self.front_tasks],
            "echo": [],
        }
        if service is not None:
            return by_service[service]
        return [key for keys in by_service.values() for key in keys]

    def patterns(self, service: str | None = None) -> list[str]:
        """SCAN patterns matching every key of the namespace, or of ``service`` only
        (its group, its counters and presence, and the filter front's journal)."""
        ns = re.sub(r"([*?\[\]\\])", r"\\\1", self.namespace)
        if service is None:
            return [f"{ns}:*"]
        extra = [f"{ns}:front:tasks"] if service == "filter" else []
        return [
            f"{ns}:{GROUPS[service]}:*",
            f"{ns}:stats:{service}",
            f"{ns}:nodes:{service}*",
            *extra,
        ]

    # -- the Redis middleware's own lists and channels -----------------------------------

    @property
    def insults(self) -> QueueKeys:
        """The InsultService's request queue."""
        ns = self.namespace
        return QueueKeys(
            f"{ns}:insults",
            f"{ns}:insults:requests",
            self.counters("insult"),
            self.presence("insult"),
        )

    @property
    def filter(self) -> QueueKeys:
        """The InsultFilter's task queue."""
        ns = self.namespace
        return QueueKeys(
            f"{ns}:filter", f"{ns}:filter:tasks", self.counters("filter"), self.presence("filter")
        )

    @property
    def echo(self) -> QueueKeys:
        """The echo baseline's request queue."""
        ns = self.namespace
        return QueueKeys(
            f"{ns}:echo", f"{ns}:echo:requests", self.counters("echo"), self.presence("echo")
        )

    def queues(self) -> tuple[QueueKeys, ...]:
        """The queues of the three services."""
        return (self.insults, self.filter, self.echo)

    def is_reply_key(self, name: object) -> bool:
        """True if a request may name ``name`` as its ``reply_to``: a key of the reply
        area, ``<ns>:<insults|filter|echo>:replies:<id>`` with a non-empty id, which
        holds nothing but reply lists. Answers go nowhere else, so a request cannot
        write to, or set an expiry on, any other key of the namespace or the database."""
        if not isinstance(name, str) or len(name) > MAX_REPLY_KEY_CHARS:
            return False
        if not name.startswith(self._reply_areas) or name in self._reply_areas:
            return False
        if name.isascii():
            return True
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True

    @cached_property
    def _reply_areas(self) -> tuple[str, ...]:
        # Checked for every request: built once.
        return tuple(queue.reply_area for queue in self.queues())

    @property
    def broadcast(self) -> str:
        """Pub/sub channel of the broadcast insults."""
        return f"{self.namespace}:insults:broadcast"

    @property
    def results(self) -> str:
        """The filter's bounded result list, newest first."""
        return f"{self.namespace}:filter:results"
