"""XML-RPC (Python's standard library): HTTP/1.1 servers and clients, direct communication.

Each service is one threaded XML-RPC server (a thread per kept-alive connection, no
Nagle) bound to ``--host`` (127.0.0.1 by default), at a path that carries the namespace:

- ``http://<host>:<insult-port>/<ns>/insult``: the InsultService (:mod:`.insult_service`).
  Subscribers are small XML-RPC servers in the client process exposing ``notify(insult)``.
- ``http://<host>:<filter-port>/<ns>/filter``: the InsultFilter front
  (:mod:`.filter_front`), which queues tasks and keeps results; worker processes
  (:mod:`.filter_worker`) pull leased batches from it and censor them.
- ``http://<host>:<echo-port>/<ns>/echo``: the bare echo baseline (:mod:`.echo_service`).

The server is in :mod:`.transport`, the client connection in :mod:`.clients`, and the
:class:`~middlewares.direct.transport.DirectTransport` tying them together in
:mod:`.backend`; every process and client is the direct middlewares' own, written once
in :mod:`middlewares.direct`. No broker: the state lives in the service processes. The
wire protocol is in ``docs/PROTOCOL.md``.

The n-node form (``serve xmlrpc <insult|filter> --nodes N``): on the insult port a master
(:mod:`.master`) lists the live InsultService nodes (``insult_service --node-id``, each on
a port of its own), which clients call directly, round-robin; the filter front is the
coordinator of worker nodes (``filter_worker --node-id``). What is not transport (node
directory, client-side failover, shared state in Redis) is in :mod:`middlewares.direct`
and :mod:`middlewares.cluster`, shared with Pyro4. See ``docs/NODES.md``.
"""
