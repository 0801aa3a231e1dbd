"""The service processes of XML-RPC and Pyro4, written once over a :class:`DirectTransport`.

Each transport package has one small module per process (``insult_service``,
``master``, ``filter_front``, ``filter_worker``, ``echo_service``) whose ``main`` calls
the function of the same name here with its transport:

- :func:`insult_service`: the one-node InsultService (store and subscribers in this
  process, a :class:`~middlewares.broadcast.Broadcaster`), or with ``--node-id`` one node
  of the n-node form (served on a free port, registered with the master, shared state in
  Redis, broadcasting only while it holds the lease);
- :func:`master`: the n-node InsultService's node directory;
- :func:`filter_front`: the filter's leased work queue, which is also the coordinator of
  the filter's n-node form;
- :func:`filter_worker`: a worker (or, with ``--node-id``, a node) pulling from the front;
- :func:`echo_service`: the bare echo baseline.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable
from typing import Any

from middlewares.broadcast import Broadcaster, SubscriberSet
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
from middlewares.direct.insult import NOTIFY_TIMEOUT, notifier
from middlewares.direct.node import insult_node
from middlewares.direct.queue import TaskQueue
from middlewares.direct.transport import DirectTransport, ServedElsewhere
from middlewares.direct.worker import RECONNECT_WAIT, add_worker_identity, serve_worker
from middlewares.runtime import ServiceProcess, service_main
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
    subscribers = SubscriberSet(notify.notify, round_timeout=NOTIFY_TIMEOUT)
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
        master = transport.reach(settings, "master")
        try:
            with transport.serve_node(settings, "insult", methods, state.gate) as server:
                membership = NodeMembership(master, node, server.address)
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
        lambda value: transport.check_address(value, "node"), process.args.expect_nodes
    )
    with transport.serve(process.settings, "master", master_methods(directory)):
        process.stop.wait()
        # The launcher stops the nodes at the same time: stay while they deregister
        # (or, for a dead one, expire), so none is left heartbeating into the void.
        directory.wait_until_empty(NODE_HEARTBEAT * MISSED_HEARTBEATS)


def _serve_front(process: ServiceProcess, transport: DirectTransport) -> None:
    settings = process.settings
    result_log = ResultLog(settings.result_limit)
    queue = TaskQueue(result_log, expected_workers=process.args.expect_workers)
    front = QueueFront(queue, result_log, settings)
    with transport.serve(settings, "filter", methods_of(front, QueueFront.REMOTE_METHODS)):
        tend(queue, process.stop)


def echo(payload: object) -> object:
    """The bare echo: ``payload`` back, unchanged, with no validation and no state."""
    return payload


def _serve_echo(process: ServiceProcess, transport: DirectTransport) -> None:
    with transport.serve(process.settings, "echo", {"echo": echo}):
        process.stop.wait()


def _expect(flag: str, what: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            flag,
            type=_count,
            default=0,
            metavar="N",
            help=f"hand out no work until N {what} have registered (or {STARTUP_GRACE:g} s "
            "passed), so the load spreads over all of them from the start (default: 0)",
        )

    return add


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _usually(transport: DirectTransport, command: str) -> str:
    return f" Usually started by `python -m middlewares serve {transport.name} {command}`."


def insult_service(transport: DirectTransport, argv: list[str] | None = None) -> None:
    """``python -m middlewares.<transport>.insult_service [--node-id ID]``."""
    service_main(
        f"middlewares.{transport.name}.insult_service",
        f"Serve the InsultService at {transport.describe('insult')}, or with --node-id as "
        "one node of the n-node form (its own port, registered with the master, shared "
        "state in Redis)." + _usually(transport, "insult [--nodes N]"),
        lambda process: _serve_insult(process, transport),
        argv=argv,
    )


def master(transport: DirectTransport, argv: list[str] | None = None) -> None:
    """``python -m middlewares.<transport>.master``."""
    service_main(
        f"middlewares.{transport.name}.master",
        f"Keep the directory of the nodes of an n-node InsultService at "
        f"{transport.describe('master')}." + _usually(transport, "insult --nodes N"),
        lambda process: _serve_master(process, transport),
        node_id="none",
        add_arguments=_expect("--expect-nodes", "nodes"),
        argv=argv,
    )


def filter_front(transport: DirectTransport, argv: list[str] | None = None) -> None:
    """``python -m middlewares.<transport>.filter_front``."""
    service_main(
        f"middlewares.{transport.name}.filter_front",
        f"Serve the InsultFilter front at {transport.describe('filter')}; workers do the "
        "censoring." + _usually(transport, "filter --workers N (or --nodes N)"),
        lambda process: _serve_front(process, transport),
        node_id="none",
        add_arguments=_expect("--expect-workers", "workers"),
        argv=argv,
    )


def filter_worker(transport: DirectTransport, argv: list[str] | None = None) -> None:
    """``python -m middlewares.<transport>.filter_worker --worker-id ID | --node-id ID``."""
    service_main(
        f"middlewares.{transport.name}.filter_worker",
        f"Censor texts pulled from the InsultFilter front at {transport.describe('filter')}."
        + _usually(transport, "filter --workers N (or --nodes N)"),
        lambda process: serve_worker(process, transport),
        node_id="none",
        add_arguments=add_worker_identity,
        argv=argv,
    )


def echo_service(transport: DirectTransport, argv: list[str] | None = None) -> None:
    """``python -m middlewares.<transport>.echo_service``."""
    service_main(
        f"middlewares.{transport.name}.echo_service",
        f"Serve a bare echo at {transport.describe('echo')}." + _usually(transport, "echo"),
        lambda process: _serve_echo(process, transport),
        node_id="none",
        argv=argv,
    )
