"""Pyro4: remote objects found through a name server, direct communication.

Every process here is a Pyro4 daemon or a client of one, serializing with serpent only.
The objects are registered in a Pyro4 name server (``--host``, ``--pyro-ns-port``; the
launcher starts one when none answers) under names prefixed with the namespace:

- ``<ns>.insult.service``: the InsultService (:mod:`.insult_service`). Subscribers are
  Pyro4 objects in the client process exposing ``notify(insult)``.
- ``<ns>.insult.filter``: the InsultFilter front (:mod:`.filter_front`), which queues
  tasks and keeps results; worker processes (:mod:`.filter_worker`) pull leased batches
  from it and censor them.
- ``<ns>.echo``: the bare echo baseline (:mod:`.echo_service`).
- ``<ns>.insult.master``: the n-node InsultService's master (:mod:`.master`), which lists
  the live nodes (unnamed objects on daemons of their own) that clients call directly.

The serving side is in :mod:`.transport`, the client connection in :mod:`.clients`, and
the :class:`~middlewares.direct.transport.DirectTransport` tying them together in
:mod:`.backend`; every process and client is the direct middlewares' own, written once
in :mod:`middlewares.direct`. The wire protocol is in ``docs/PROTOCOL.md``.
"""
