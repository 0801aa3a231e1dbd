"""A filter worker process: ``python -m middlewares.pyro.filter_worker --worker-id ID``.

The worker pulls leased batches of tasks from the front (``<ns>.insult.filter``) with a
long-poll, censors them and hands the results back with its next pull; the loop is
:class:`~middlewares.workqueue.PullWorker`, shared with the XML-RPC form. Here it gets its
two Pyro4 connections to the front (pulls, heartbeats) and its insult list:
``get_insults`` of the InsultService of the namespace (either form, through
:class:`~middlewares.pyro.clients.PyroInsultClient`), re-read at most every
``insult_refresh`` seconds; the default list when no InsultService is registered.

Started with ``--node-id ID`` instead, it is one node of the n-node form: the same
worker, with the node id as its worker id, counting the tasks it hands in under
``<ns>:stats:filter`` in Redis.

Killed, the worker stops heartbeating and its restart re-registers under the same id;
either way the front re-queues what it held. On SIGTERM it finishes the batch it holds,
hands the results in, leaves and exits 0.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from middlewares.cluster import NodeCounters, redis_client
from middlewares.contract import MiddlewareError
from middlewares.pyro._common import (
    INSULT_FILTER,
    NotRegistered,
    Remote,
    build_parser,
    node_id,
    object_name,
    run_service,
    serve_hint,
)
from middlewares.pyro.clients import PyroInsultClient
from middlewares.runtime import StopSignal
from middlewares.settings import Settings, from_args
from middlewares.workqueue import PullWorker

#: Longest a refresh of the insult list may take: it holds up the batch being censored.
REFRESH_TIMEOUT = 1.0


class _InsultList:
    """``fetch_insults`` of a worker: the InsultService's list, or None when none runs."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings.with_changes(timeout=min(settings.timeout, REFRESH_TIMEOUT))
        self._client: PyroInsultClient | None = None

    def __call__(self) -> list[str] | None:
        try:
            if self._client is None:
                self._client = PyroInsultClient(self._settings)
            return self._client.get_insults()
        except NotRegistered:
            self.close()  # none in this namespace (any more): censor the defaults
            return None

    def close(self) -> None:
        """Close the client, if any."""
        if self._client is not None:
            self._client.close()
            self._client = None


@contextlib.contextmanager
def _node_counters(settings: Settings, node: str | None) -> Iterator[NodeCounters | None]:
    """The served-task counter of a node; None for a worker of the one-node form."""
    if node is None:
        yield None
        return
    client = redis_client(settings)
    counters = NodeCounters(client, settings.namespace, "filter", node, resume=True)
    try:
        yield counters
    finally:
        counters.close()
        client.close()


def serve(settings: Settings, worker_id: str, node: str | None = None) -> None:
    """Run one worker until SIGINT or SIGTERM."""
    stop = StopSignal()
    front_name = object_name(settings, INSULT_FILTER)
    insults = _InsultList(settings)
    with _node_counters(settings, node) as counters:
        worker = PullWorker(
            settings,
            worker_id,
            stop,
            front=Remote(settings, front_name, serve_hint("filter")),
            heart=Remote(settings, front_name, serve_hint("filter")),
            fetch_insults=insults,
            served=None if counters is None else counters.increment,
        )
        try:
            worker.run()
        except MiddlewareError as error:
            print(
                f"error: worker {worker_id} cannot reach the filter front: {error}",
                file=sys.stderr,
            )
            sys.exit(2)
        finally:
            insults.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.pyro.filter_worker``."""
    parser = build_parser(
        "middlewares.pyro.filter_worker",
        "Censor texts pulled from the InsultFilter front <namespace>.insult.filter. "
        "Usually started by `python -m middlewares serve pyro filter --workers N` "
        "(or --nodes N).",
    )
    identity = parser.add_mutually_exclusive_group(required=True)
    identity.add_argument(
        "--worker-id",
        type=node_id,
        help="stable id of this worker: a restart with the same id recovers its tasks",
    )
    identity.add_argument(
        "--node-id",
        type=node_id,
        help="run as this node of the n-node form: the worker id, and the name its "
        "served tasks are counted under in Redis",
    )
    args = parser.parse_args(argv)
    settings = from_args(args)
    worker_id = args.node_id or args.worker_id
    run_service(
        f"pyro-filter-worker {worker_id}", lambda: serve(settings, worker_id, args.node_id)
    )


if __name__ == "__main__":
    main()
