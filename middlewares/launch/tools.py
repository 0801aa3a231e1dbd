"""The launcher's housekeeping and client commands: ``check``, ``clean``, ``call`` and
``watch`` of ``python -m middlewares``.

``check`` says what really answers: the brokers, and the XML-RPC and Pyro4 servers of
the namespace (a real request to each). ``clean`` deletes a namespace's broker objects
and says what it removed. ``call`` makes one request of a service and ``watch`` prints
its broadcasts: a client for trying a service by hand, on any middleware.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from middlewares import settings as settings_module
from middlewares.contract import SERVICES, Backend, BrokerUnavailable, MiddlewareError
from middlewares.registry import MIDDLEWARES, get_backend
from middlewares.runtime import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, StopSignal, whole_number
from middlewares.settings import Settings

#: Settings only a server reads: the client commands leave them off their command line.
SERVER_BEHAVIOUR = (
    "broadcast_interval",
    "load_defaults",
    "result_limit",
    "insult_refresh",
    "work_ms",
    "work_kind",
    "delivery_limit",
)
#: Where check and clean look: the namespace and the addresses of everything in it.
WHERE = (
    "namespace",
    "coordinator_host",
    "insult_port",
    "filter_port",
    "echo_port",
    "pyro_ns_port",
    "redis_url",
    "amqp_url",
    "timeout",
)
#: Seconds a probe of ``check`` waits for a server: it is on this machine or near.
PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Operation:
    """One request ``call`` can make: its service, its arguments and how it is made."""

    service: str
    arguments: tuple[str, ...]
    run: Callable[..., object]
    help: str


#: What ``python -m middlewares call <mw> <op>`` can do, by op.
OPERATIONS = {
    "add_insult": Operation(
        "insult", ("TEXT",), lambda c, text: c.add_insult(text), "store an insult; True if new"
    ),
    "get_insults": Operation("insult", (), lambda c: c.get_insults(), "list the insults"),
    "random_insult": Operation("insult", (), lambda c: c.random_insult(), "one insult at random"),
    "filter": Operation(
        "filter", ("TEXT",), lambda c, text: c.filter(text), "censor a text and wait for it"
    ),
    "submit": Operation("filter", ("TEXT",), lambda c, text: c.submit(text), "queue a text"),
    "get_results": Operation(
        "filter", ("[N]",), lambda c, n="10": c.get_results(int(n)), "the N newest results"
    ),
    "echo": Operation("echo", ("TEXT",), lambda c, text: c.echo(text), "the bare round trip"),
}


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``check``, ``clean``, ``call`` and ``watch`` to the launcher's commands."""
    namespace_commands = {
        "check": (
            "say which brokers and servers of the namespace really answer",
            "Say whether Redis and RabbitMQ answer (and the dead letters of the namespace), "
            "and whether the XML-RPC and Pyro4 InsultService, InsultFilter and echo of the "
            "namespace answer a request. Exit 2 when a broker does not answer.",
        ),
        "clean": (
            "delete a namespace's keys, queues, exchanges and registered names",
            "Delete every Redis key, RabbitMQ queue and exchange and Pyro4 name of the "
            "namespace, and say what was removed. Stop its services first: a running "
            "service would declare its objects again. Exit 2 when a broker does not answer.",
        ),
    }
    for name, (summary, description) in namespace_commands.items():
        command = commands.add_parser(name, help=summary, description=description)
        settings_module.add_arguments(command, only=WHERE)
    call = commands.add_parser(
        "call",
        help="make one request of a service and print the answer",
        description="Make one request of a running service and print the answer "
        "(a list one item per line). Example: python -m middlewares call redis filter "
        "'you are tonto'",
        epilog="operations: "
        + "; ".join(
            " ".join((name, *op.arguments)) + f": {op.help} ({op.service})"
            for name, op in OPERATIONS.items()
        ),
    )
    call.add_argument("middleware", choices=MIDDLEWARES, help="the service's middleware")
    call.add_argument("operation", choices=list(OPERATIONS), help="what to ask (see below)")
    call.add_argument("arguments", nargs="*", help="the operation's arguments, if any")
    # A call opens no server; only watch's subscriber listens (--host, --advertise-host).
    settings_module.add_arguments(call, leave_out=(*SERVER_BEHAVIOUR, "host", "advertise_host"))
    watch = commands.add_parser(
        "watch",
        help="print the InsultService's broadcasts until Ctrl-C",
        description="Subscribe to the InsultService of the namespace and print each "
        "insult it broadcasts, one a line, until Ctrl-C (exit 130) or --count of them "
        "(exit 0).",
    )
    watch.add_argument("middleware", choices=MIDDLEWARES, help="the service's middleware")
    watch.add_argument(
        "--count",
        type=whole_number(1),
        help="stop after this many broadcasts (default: until Ctrl-C)",
    )
    settings_module.add_arguments(watch, leave_out=SERVER_BEHAVIOUR)


def check(args: argparse.Namespace) -> int:
    """Print, for each middleware, what answers; 2 if a broker does not."""
    settings = settings_module.from_args(args)
    print(f"namespace {settings.namespace}")
    unreachable = 0
    for name in MIDDLEWARES:
        backend = get_backend(name)
        try:
            backend.check(settings)
        except BrokerUnavailable as error:
            unreachable += 1
            print(f"{name:9} {error}")
            continue
        if backend.profile.direct:
            print(f"{name:9} {_probe_servers(backend, settings)}")
        else:
            print(f"{name:9} broker ok{_dead_letter_note(backend, settings)}")
    return EXIT_USAGE if unreachable else 0


def _probe_servers(backend: Backend, settings: Settings) -> str:
    """``insult: answers; filter: nothing at URL; ...``: one real request per service
    (one that needs no filter worker, so a front without workers still answers)."""
    quick = settings.with_changes(timeout=min(settings.timeout, PROBE_TIMEOUT))
    requests: dict[str, Callable[[], object]] = {
        "insult": lambda: _ask(backend.insult_client(quick), lambda c: c.random_insult()),
        "filter": lambda: _ask(backend.filter_client(quick), lambda c: c.get_results(1)),
        "echo": lambda: _ask(backend.echo_client(quick), lambda c: c.echo("check")),
    }
    parts = []
    for service in SERVICES:
        try:
            requests[service]()
            parts.append(f"{service}: answers")
        except BrokerUnavailable as error:
            parts.append(f"{service}: nothing at {error.url}")
        except (MiddlewareError, OSError) as error:
            parts.append(f"{service}: does not answer ({str(error).splitlines()[0]})")
    return "; ".join(parts)


def _ask(client: AbstractContextManager[Any], request: Callable[[Any], object]) -> object:
    """``request(client)``, then close the client."""
    with client as connected:
        return request(connected)


def _dead_letter_note(backend: Backend, settings: Settings) -> str:
    """``; dead letters: none`` or the lists holding some."""
    try:
        dead_letters = backend.dead_letters(settings)
    except BrokerUnavailable as error:
        return f"; dead letters unknown ({error})"
    held = [f"{queue} holds {count}" for queue, count in dead_letters.items() if count]
    return f"; dead letters: {', '.join(held) or 'none'}" if dead_letters else ""


def clean(args: argparse.Namespace) -> int:
    """Delete the namespace on every middleware and say what went; 2 if a broker does
    not answer (what it holds stays)."""
    settings = settings_module.from_args(args)
    unreachable = 0
    for name in MIDDLEWARES:
        try:
            removed = get_backend(name).cleanup(settings)
        except BrokerUnavailable as error:
            unreachable += 1
            print(f"{name:9} {error}", file=sys.stderr)
            continue
        print(f"{name:9} " + (f"removed {', '.join(removed)}" if removed else "nothing to remove"))
    print(f"namespace {settings.namespace}: clean" + (" except the above" if unreachable else ""))
    return EXIT_USAGE if unreachable else 0


def call(args: argparse.Namespace) -> int:
    """Make one request and print its answer; 1 when the service refuses it."""
    operation = OPERATIONS[args.operation]
    wanted = [a for a in operation.arguments if not a.startswith("[")]
    if not len(wanted) <= len(args.arguments) <= len(operation.arguments):
        raise ValueError(
            f"{args.operation} takes {' '.join(operation.arguments) or 'no arguments'}, "
            f"got {len(args.arguments)} argument(s)"
        )
    if args.operation == "get_results" and args.arguments and not args.arguments[0].isdigit():
        raise ValueError(f"get_results takes a whole number, got {args.arguments[0]!r}")
    settings = settings_module.from_args(args)
    backend = get_backend(args.middleware)
    factory = {
        "insult": backend.insult_client,
        "filter": backend.filter_client,
        "echo": backend.echo_client,
    }[operation.service]
    try:
        with factory(settings) as client:
            answer = operation.run(client, *args.arguments)
    except BrokerUnavailable:
        raise
    except MiddlewareError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    try:
        for line in answer if isinstance(answer, list) else [answer]:
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (``| head``) has what it wanted; Python must not flush again at exit.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    return 0


def watch(args: argparse.Namespace) -> int:
    """Print every broadcast until Ctrl-C (130) or ``--count`` of them (0)."""
    settings = settings_module.from_args(args)
    stop = StopSignal()
    lock = threading.Lock()
    seen = 0

    def show(insult: str) -> None:
        nonlocal seen
        with lock:
            if args.count is not None and seen >= args.count:
                return
            seen += 1
            print(insult, flush=True)
            if seen == args.count:
                stop.set()

    with get_backend(args.middleware).insult_client(settings) as client:
        client.subscribe(show)
        print(
            f"watching the {args.middleware} InsultService of namespace "
            f"{settings.namespace}; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        stop.wait()
        client.unsubscribe()
    return 0 if args.count is not None and seen >= args.count else EXIT_INTERRUPTED
