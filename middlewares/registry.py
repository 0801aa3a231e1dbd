"""Look up a middleware's :class:`~middlewares.contract.Backend` by name.

Backends are imported lazily so that, say, running the Redis services does not need
pika to be importable, and so a harness can list the names without importing anything.
"""

from __future__ import annotations

from importlib import import_module

from middlewares.contract import Backend

#: Every middleware this project compares, in the order reports show them.
MIDDLEWARES = ("xmlrpc", "pyro", "redis", "rabbitmq")


#: The backend with no transport (:mod:`middlewares.stub`): found by name for tests and
#: the load generator's calibration, never one of the compared middlewares.
STUB = "stub"


def get_backend(name: str) -> Backend:
    """The backend called ``name``; raises ValueError naming the valid choices."""
    if name == STUB:
        return import_module("middlewares.stub").BACKEND
    if name not in MIDDLEWARES:
        raise ValueError(f"unknown middleware {name!r}; choose one of {', '.join(MIDDLEWARES)}")
    return import_module(f"middlewares.{name}.backend").BACKEND
