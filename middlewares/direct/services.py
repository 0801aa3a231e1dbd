"""The service processes of XML-RPC and Pyro4, written once over a :class:`DirectTransport`.

Each transport package has one tiny module per process, which calls :func:`run` with its
transport and the process's name (:data:`PROCESSES`):

- ``insult_service``: the one-node InsultService (store and subscribers in this process,
  a :class:`~middlewares.broadcast.Broadcaster`), or with ``--node-id`` one node of the
  n-node form (served on a free port, registered with the master, shared state in Redis,
  broadcasting only while it holds the lease);
- ``master``: the n-node InsultService's node directory;
- ``filter_front``: the filter's leased work queue, which is also the coordinator of the
  filter's n-node form;
- ``filter_worker``: a worker (or, with ``--node-id``, a node) pulling from the front;
- ``echo_service``: the bare echo baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from middlewares.broadcast import Broadcaster, SubscriberSet
from middlewares.cluster.client import connect
from middlewares.cluster.journal import RedisJournal
from middlewares.core import InsultStore, ResultLog, load_default_insults
from middlewares.direct.directory import (
    MISSED_HEARTBEATS,
    NODE_HEARTBEAT,
    STARTUP_GRACE,
    NodeDirectory,
    NodeMembership,
)
from middlewares.direct.front import QueueFront, tend
from middlewares.direct.gate import RequestGate
from middlewares.direct.insult import notifier, round_timeout
from middlewares.direct.node import insult_node
from middlewares.direct.queue import TaskQueue
from middlewares.direct.transport import DirectTransport, ServedElsewhere
from middlewares.direct.worker import RECONNECT_WAIT, add_worker_identity, serve_worker
from middlewares.runtime import NodeIdRule, ServiceProcess, service_main, whole_number
from middlewares.secret import deployment_secret
from middlewares.service import InsultService

log = logging.getLogger(__name__)


def methods_of(target: object, names: Iterable[str]) -> dict[str, Callable[..., Any]]:
    """The remote methods of ``target``, by name: what a transport serves."""
    return {name: getattr(target, name) for name in names}


def _serve_insult(process: ServiceProcess, transport: DirectTransport) -> None:
    if process.node_id is None:
        _serve_one_node(process, transport)
    else:
        _serve_node(process, transport, process.node_id)


def _check_subscriber(transport: DirectTransport) -> Callable[[object], str]:
    return lambda value: transport.check_address(value, "subscriber")


def _serve_one_node(process: ServiceProcess, transport: DirectTransport) -> None:
    settings = process.settings
    defaults = load_default_insults() if settings.load_defaults else []
    store = InsultStore(defaults, settings.limits)
    notify = notifier(transport, settings)
    subscribers = SubscriberSet(notify.notify, round_timeout=round_timeout(settings))
    broadcaster = Broadcaster(
        settings.broadcast_interval, store.random, notify.broadcast_to(subscribers)
    )
    service = InsultService(store, settings, subscribers, _check_subscriber(transport))
    gate = RequestGate()
    methods = methods_of(service, InsultService.REMOTE_METHODS)
    try:
        with transport.serve(settings, "insult", methods, gate) as server:
            broadcaster.start()
            process.stop.wait()
            broadcaster.stop()
            # Answer the calls under way before the connections close.
            gate.close(settings.timeout)
            server.leave(settings.timeout)
    finally:
        subscribers.close()


def _serve_node(process: ServiceProcess, transport: DirectTransport, node: str) -> None:
    settings = process.settings
    with insult_node(settings, node, notifier(transport, settings)) as state:
        service = InsultService(
            state.store, settings, state.subscribers, _check_subscriber(transport)
        )
        methods = methods_of(service, InsultService.REMOTE_METHODS)
        secret = deployment_secret(f"InsultService node {node}")
        master = transport.reach(settings, "master")
        try:
            with transport.serve_node(settings, "insult", methods, state.gate) as server:
                membership = NodeMembership(master, node, server.address, secret)
                state.serve(membership, RECONNECT_WAIT, process.stop, settings.timeout)
                server.leave(settings.timeout)
        finally:
            master.close()
    log.info("node %s left", node)


def _served_by_nodes(name: str) -> Callable[..., Any]:
    def refuse(*args: object) -> Any:
        raise ServedElsewhere(
            f"{name} is served by the nodes of this n-node InsultService, not by its "
            "master: call nodes() here for their addresses, then call one of them"
        )

    return refuse


def master_methods(directory: NodeDirectory) -> dict[str, Callable[..., Any]]:
    """The master's methods: the directory's, and a clear refusal of the InsultService
    methods for a client that called the master as a one-node service."""
    methods = methods_of(directory, ("nodes", "register", "heartbeat", "deregister"))
    for name in InsultService.REMOTE_METHODS:
        methods[name] = _served_by_nodes(name)
    return methods


def _serve_master(process: ServiceProcess, transport: DirectTransport) -> None:
    directory = NodeDirectory(
        lambda value: transport.check_address(value, "node"),
        deployment_secret("the InsultService master"),
        process.args.expect_nodes,
    )
    with transport.serve(process.settings, "master", master_methods(directory)):
        process.stop.wait()
        # The launcher stops the nodes at the same time: stay while they deregister
        # (or, for a dead one, expire), so none is left heartbeating into the void.
        directory.wait_until_empty(NODE_HEARTBEAT * MISSED_HEARTBEATS)


def _serve_front(process: ServiceProcess, transport: DirectTransport) -> None:
    settings = process.settings
    secret = deployment_secret("the filter front")
    result_log = ResultLog(settings.result_limit)
    with contextlib.ExitStack() as stack:
        journal = None
        if process.args.durable:
            client = stack.enter_context(contextlib.closing(connect(settings)))
            journal = stack.enter_context(
                contextlib.closing(RedisJournal(client, settings.namespace))
            )
        queue = TaskQueue(
            result_log,
            expected_workers=process.args.expect_workers,
            journal=journal,
            redeliver=settings.guarantee == "at-least-once",
        )
        front = QueueFront(queue, result_log, settings, secret)
        with transport.serve(settings, "filter", methods_of(front, QueueFront.REMOTE_METHODS)):
            tend(queue, process.stop)


def echo(payload: object) -> object:
    """The bare echo: ``payload`` back, unchanged, with no validation and no state."""
    return payload


def _serve_echo(process: ServiceProcess, transport: DirectTransport) -> None:
    with transport.serve(process.settings, "echo", {"echo": echo}):
        process.stop.wait()


def _add_front_arguments(parser: argparse.ArgumentParser) -> None:
    _expect("--expect-workers", "workers")(parser)
    parser.add_argument(
        "--durable",
        action="store_true",
        help="keep every accepted task in Redis until its result is collected, so that a "
        "restarted front serves it (the n-node form)",
    )


def _expect(flag: str, what: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            flag,
            type=whole_number(0),
            default=0,
            metavar="N",
            help=f"hand out no work until N {what} have registered (or {STARTUP_GRACE:g} s "
            "passed), so the load spreads over all of them from the start (default: 0)",
        )

    return add


@dataclass(frozen=True)
class _Process:
    """One kind of service process: its body, what it does (for ``--help``, with
    ``{where}`` the role's place), how the launcher usually starts it, and its flags."""

    serve: Callable[[ServiceProcess, DirectTransport], None]
    role: str
    does: str
    usually: str
    node_id: NodeIdRule = "none"
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


#: Every service process of a direct middleware, by module name.
PROCESSES = {
    "insult_service": _Process(
        _serve_insult,
        "insult",
        "Serve the InsultService at {where}, or with --node-id as one node of the n-node "
        "form (its own port, registered with the master, shared state in Redis).",
        "insult [--nodes N]",
        node_id="optional",
    ),
    "master": _Process(
        _serve_master,
        "master",
        "Keep the directory of the nodes of an n-node InsultService at {where}.",
        "insult --nodes N",
        add_arguments=_expect("--expect-nodes", "nodes"),
    ),
    "filter_front": _Process(
        _serve_front,
        "filter",
        "Serve the InsultFilter front at {where}; workers do the censoring.",
        "filter --workers N (or --nodes N)",
        add_arguments=_add_front_arguments,
    ),
    "filter_worker": _Process(
        serve_worker,
        "filter",
        "Censor texts pulled from the InsultFilter front at {where}.",
        "filter --workers N (or --nodes N)",
        add_arguments=add_worker_identity,
    ),
    "echo_service": _Process(
        _serve_echo, "echo", "Serve a bare echo at {where}.", "echo"
    ),
}


def run(transport: DirectTransport, process: str, argv: list[str] | None = None) -> None:
    """Run service process ``process`` (a key of :data:`PROCESSES`) of ``transport``:
    what ``python -m middlewares.<transport>.<process>`` does."""
    spec = PROCESSES[process]
    service_main(
        f"middlewares.{transport.name}.{process}",
        spec.does.format(where=transport.describe(spec.role))
        + f" Usually started by `python -m middlewares serve {transport.name} "
        + f"{spec.usually}`.",
        lambda started: spec.serve(started, transport),
        node_id=spec.node_id,
        add_arguments=spec.add_arguments,
        argv=argv,
    )
