"""RabbitMQ (AMQP 0-9-1, through pika): the services run in their own processes and only
ever talk through the broker. The wire protocol is in ``docs/PROTOCOL.md``.

- InsultService: one process consumes ``<ns>.insults.requests`` (JSON ``{"op", "args"}``)
  and replies to each request's ``reply_to`` with its ``correlation_id``; clients use
  direct reply-to. Its broadcaster publishes a random insult to the fanout exchange
  ``<ns>.insults.broadcast``; each subscriber binds an exclusive queue of its own.
- InsultFilter: no front process. Clients publish persistent tasks to the durable queue
  ``<ns>.filter.tasks`` (confirmed by the broker, pipelined: :mod:`.confirms`);
  competing worker processes censor them and publish each result once, to the client's
  reply queue and (a ``BCC`` header) the bounded result list ``<ns>.filter.results``,
  acknowledging tasks in batches after their results.
- Under the at-most-once guarantee consumers take messages with auto-ack and tasks are
  transient and unconfirmed (docs/PROTOCOL.md, RabbitMQ, Delivery guarantees).
- Echo: the InsultService's request/reply pattern with no logic, as a baseline.

The n-node form (``--nodes N``) runs N of those service processes or workers with
``--node-id``, as competing consumers of the same queue: the broker spreads the load;
the insult store, the broadcast lease and per-node counters live in Redis
(:mod:`middlewares.cluster`). See ``docs/NODES.md``.

Every filter worker reports its count of acknowledged tasks to the fanout exchange
``<ns>.filter.stats`` (:class:`WorkerReport`), from which the dynamic-scaling master
measures the arrival rate.

Other packages (``dynamic``) use the broker objects of a namespace, connections, and the
task and report formats from :mod:`.transport`.
"""
