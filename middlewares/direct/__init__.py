"""What XML-RPC and Pyro4 share, written once and transport-neutral: the n-node form's
master, nodes and client-side failover, the InsultService's broadcasts and client, and the
InsultFilter's leased work queue with its front, workers and client.

A transport (:mod:`middlewares.xmlrpc.transport`, :mod:`middlewares.pyro.transport`)
implements :class:`.transport.DirectTransport`: how to serve a set of methods and how to
reach them. Everything else is here, once: see ``docs/ARCHITECTURE.md`` for the modules.
"""
