"""Pyro4: remote objects found through a name server, direct communication.

Every process here is a Pyro4 daemon or a client of one, serializing with serpent only.
The objects are registered in a Pyro4 name server (``--host``, ``--pyro-ns-port``; the
launcher starts one when none answers) under names prefixed with the namespace:

- ``<ns>.insult.service``: the InsultService (:mod:`.insult_service`). Subscribers are
  Pyro4 objects in the client process exposing ``notify(insult)``.
- ``<ns>.insult.filter``: the InsultFilter front (:mod:`.filter_service`), which queues
  tasks and keeps results; worker processes (:mod:`.filter_worker`) pull leased batches
  from it and censor them.
- ``<ns>.echo``: the bare echo baseline (:mod:`.echo_service`).

Clients (:mod:`.clients`) resolve a name once and keep the connection. The wire protocol
is in ``docs/PROTOCOL.md``.
"""
