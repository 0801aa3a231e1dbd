"""Every Redis key name of insultbench, in one place (``docs/PROTOCOL.md`` lists the same).

Two users share them: the n-node form of every middleware keeps its shared state here
(the store, the broadcast lease, the subscribers, the per-node counters), and the Redis
middleware's services run on the lists of :class:`QueueKeys`. Everything of a namespace
starts with ``<ns>:``, so a namespace is deleted by a SCAN of that prefix.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one Redis service's queue, all under ``prefix`` (e.g. ``<ns>:filter``).

    Attributes:
        prefix: The service's key prefix.
        queue: The list clients LPUSH messages on and consumers take them from (the right).
        counters: Hash of the messages each consumer acknowledged, by consumer id: the
            per-node counters of the n-node form.
    """

    prefix: str
    queue: str
    counters: str

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

    def replies(self, client_id: str) -> str:
        """A client's private reply list."""
        return f"{self.prefix}:replies:{client_id}"


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

    @property
    def front_tasks(self) -> str:
        """Hash of task id -> text: the tasks an n-node filter front (XML-RPC, Pyro4)
        accepted and whose results were not collected yet, its journal."""
        return f"{self.namespace}:front:tasks"

    def shared_state(self) -> list[str]:
        """The keys an n-node deployment of a direct or RabbitMQ middleware leaves."""
        return [
            self.store,
            self.lease,
            self.subscribers,
            self.counters("insult"),
            self.counters("filter"),
            self.front_tasks,
        ]

    # -- the Redis middleware's own lists and channels -----------------------------------

    @property
    def insults(self) -> QueueKeys:
        """The InsultService's request queue."""
        ns = self.namespace
        return QueueKeys(f"{ns}:insults", f"{ns}:insults:requests", self.counters("insult"))

    @property
    def filter(self) -> QueueKeys:
        """The InsultFilter's task queue."""
        ns = self.namespace
        return QueueKeys(f"{ns}:filter", f"{ns}:filter:tasks", self.counters("filter"))

    @property
    def echo(self) -> QueueKeys:
        """The echo baseline's request queue."""
        ns = self.namespace
        return QueueKeys(f"{ns}:echo", f"{ns}:echo:requests", self.counters("echo"))

    @property
    def broadcast(self) -> str:
        """Pub/sub channel of the broadcast insults."""
        return f"{self.namespace}:insults:broadcast"

    @property
    def results(self) -> str:
        """The filter's bounded result list, newest first."""
        return f"{self.namespace}:filter:results"
