"""The launcher: ``python -m middlewares serve <middleware> <service>``.

It asks the middleware's backend which processes make up the service, checks that the
broker is reachable, starts them, restarts workers that die, and on SIGINT or SIGTERM
stops them all before exiting.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from logging import Logger

from middlewares import settings as settings_module
from middlewares.contract import SERVICES, Backend, BrokerUnavailable, ProcessSpec
from middlewares.launch import cpu_cap, tools
from middlewares.launch.brokers import ACTIONS as broker_actions
from middlewares.launch.cpu_cap import CpuCaps
from middlewares.launch.processes import ProcessFailed, Supervisor
from middlewares.registry import MIDDLEWARES, get_backend
from middlewares.runtime import (
    EXIT_FAILED,
    EXIT_USAGE,
    CommandParser,
    StopSignal,
    configure_logging,
    parse_node_id,
    run_main,
)
from middlewares.secret import ensure_secret
from middlewares.settings import Settings

_PORT_FIELDS = {"insult": "insult_port", "filter": "filter_port", "echo": "echo_port"}
#: The services with an n-node form, which a node can join (the echo baseline has none).
NODE_SERVICES = ("insult", "filter")
MIDDLEWARE_HELP = "the middleware to run it on"
SERVICE_HELP = "InsultService, InsultFilter, or the bare echo baseline"


def build_parser() -> argparse.ArgumentParser:
    """The launcher's command line."""
    parser = CommandParser(
        prog="python -m middlewares",
        description="Run the InsultService, the InsultFilter or the echo baseline "
        "on one middleware.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="start a service and keep it running until Ctrl-C",
        description="Start a service and keep it running until Ctrl-C or SIGTERM. "
        "Example: python -m middlewares serve redis filter --workers 2",
    )
    serve.add_argument("middleware", choices=MIDDLEWARES, help=MIDDLEWARE_HELP)
    serve.add_argument("service", choices=SERVICES, help=SERVICE_HELP)
    serve.add_argument(
        "--workers", type=int, default=1, help="filter worker processes (default: 1)"
    )
    serve.add_argument(
        "--nodes",
        type=int,
        help="start the n-node (master/worker) form with this many nodes; "
        "--nodes 1 is the same architecture with one node; --nodes 0 starts only the "
        "coordination (master, front, name server), for nodes that join from other "
        "machines (docs/HOSTS.md) (default: the one-node form)",
    )
    serve.add_argument(
        "--port",
        type=settings_module.port,
        help="XML-RPC: this service's port; Pyro4: the name server's port (default: the "
        "service's port setting below)",
    )
    serve.add_argument(
        "--keep",
        action="store_true",
        help="on a clean stop, keep the service's keys, queues and names in the broker "
        "(default: remove them, as `clean` would for this service)",
    )
    cpu_cap.add_arguments(serve, cpu_cap.fraction_or_zero)
    settings_module.add_arguments(serve)
    join = commands.add_parser(
        "join",
        help="add one node to a running n-node deployment",
        description="Start one more node of a running n-node deployment (same namespace) "
        "and keep it until Ctrl-C, which removes it gracefully. From another machine, "
        "say where the deployment is: --coordinator-host (XML-RPC, Pyro4), --redis-url, "
        "--amqp-url, and --host for where the node listens (docs/HOSTS.md). "
        "Example: python -m middlewares join redis filter",
    )
    join.add_argument("middleware", choices=MIDDLEWARES, help=MIDDLEWARE_HELP)
    join.add_argument("service", choices=NODE_SERVICES, help="the service to add a node to")
    join.add_argument(
        "--node-id", type=parse_node_id, help="the node's id (default: a new random one)"
    )
    cpu_cap.add_arguments(join, cpu_cap.fraction_or_zero)
    settings_module.add_arguments(join)
    tools.add_commands(commands)
    brokers = commands.add_parser(
        "brokers",
        help="make Redis and RabbitMQ reachable (up), report them (status), stop them (down)",
        description="up: use a broker that answers, else start the installed server, else "
        "Docker Compose, else install it with apt (root), else say what to run. "
        "down: stop only what up started. Reads REDIS_URL and AMQP_URL.",
    )
    brokers.add_argument(
        "action", choices=list(broker_actions), help="what to do with the brokers"
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = settings_module.from_args(args)
    if getattr(args, "port", None) is None:
        return settings
    field = "pyro_ns_port" if args.middleware == "pyro" else _PORT_FIELDS[args.service]
    return settings.with_changes(**{field: args.port})


def _caps(args: argparse.Namespace) -> CpuCaps:
    return CpuCaps(args.node_cpu or 0.0, args.coordinator_cpu, args.cap_method)


def serve(args: argparse.Namespace) -> int:
    """Run one service until a stop signal; returns the exit status."""
    if args.workers < 1 or (args.nodes is not None and args.nodes < 0):
        print("error: --workers must be at least 1 and --nodes at least 0", file=sys.stderr)
        return 2
    if args.nodes is None and _caps(args).any:
        print("error: --node-cpu and --coordinator-cpu need --nodes", file=sys.stderr)
        return 2
    settings = _settings(args)
    backend = get_backend(args.middleware)
    backend.check(settings)
    if args.nodes is None:
        specs = backend.processes(args.service, settings, args.workers)
    else:
        specs = backend.cluster_processes(args.service, settings, args.nodes)
    _warn_exposure(backend, settings)
    name = f"serve-{args.middleware}-{args.service}"
    if not specs:
        configure_logging(name).info(
            "nothing to start: the %s broker coordinates the nodes; add them with "
            "`python -m middlewares join %s %s`",
            args.middleware,
            args.middleware,
            args.service,
        )
    status = supervise(name, specs, settings, _caps(args))
    if status == 0 and not args.keep:
        _remove_own(backend, settings, args.service, configure_logging(name))
    return status


def _remove_own(backend: Backend, settings: Settings, service: str, log: Logger) -> None:
    """After a clean stop, delete what the service left in the brokers (its queues,
    keys, names), so the next deployment in the namespace starts empty."""
    try:
        removed = backend.cleanup(settings, service)
    except BrokerUnavailable as error:
        log.warning("could not remove the %s objects of %s: %s", service, settings.namespace, error)
        return
    if removed:
        log.info(
            "removed %s of namespace %s (--keep keeps them)",
            ", ".join(removed),
            settings.namespace,
        )


def join(args: argparse.Namespace) -> int:
    """Run one extra node of an n-node deployment until a stop signal."""
    settings = _settings(args)
    backend = get_backend(args.middleware)
    backend.check_join(args.service, settings)
    node = args.node_id or f"joined-{uuid.uuid4().hex[:8]}"
    spec = backend.node_process(args.service, settings, node)
    _warn_exposure(backend, settings)
    return supervise(f"join-{args.middleware}-{args.service}", [spec], settings, _caps(args))


def _warn_exposure(backend: Backend, settings: Settings) -> None:
    """Say once, before anything starts, that servers are reachable without a password."""
    warning = backend.exposure_warning(settings)
    if warning:
        print(warning, file=sys.stderr)


def supervise(
    name: str, specs: list[ProcessSpec], settings: Settings, caps: CpuCaps | None = None
) -> int:
    """Start ``specs`` (under ``caps``) with the deployment secret in their environment,
    keep them running until SIGINT/SIGTERM, then stop them all and remove the cgroups
    the caps needed."""
    ensure_secret()
    log = configure_logging(name)
    stop = StopSignal()
    capper = cpu_cap.open_capper(caps or CpuCaps())
    supervisor = Supervisor(specs, place=capper.placement if capper else None)
    try:
        if capper:
            log.info(capper.describe())
        supervisor.start()
        log.info("namespace %s; Ctrl-C to stop", settings.namespace)
        while not stop.wait(0.2):
            supervisor.check()
    except ProcessFailed as error:
        log.error("%s; stopping the rest", error)
        return EXIT_FAILED
    finally:
        supervisor.stop()
        if capper:
            capper.close()
    return 0


def brokers(args: argparse.Namespace) -> int:
    """Run one action of :mod:`middlewares.launch.brokers`."""
    return broker_actions[args.action](Settings.from_env())


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares``."""
    args = build_parser().parse_args(argv)
    try:
        command = {
            "serve": serve,
            "join": join,
            "check": tools.check,
            "clean": tools.clean,
            "call": tools.call,
            "watch": tools.watch,
            "brokers": brokers,
        }[args.command]
        run_main(lambda: command(args))
    except (ValueError, NotImplementedError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
