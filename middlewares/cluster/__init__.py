"""Shared state of the n-node form in Redis, the same for all four middlewares.

In the n-node form the insult store, the broadcaster lease, the per-node counters and
(for the direct middlewares) the subscribers live in Redis, whatever middleware carries
the requests. One design for all four keeps the comparison about the transport: every
middleware pays the same store round trip, and SADD makes "add if new" atomic across
nodes. Every key name is in :mod:`.keys`; the Lua scripts are files under ``lua/``.
"""
