"""Settings shared by every service, client and harness, as one frozen dataclass.

Every command line builds its :class:`Settings` the same way: defaults, then environment
variables, then flags (:func:`add_arguments` and :func:`from_args`). Child processes get
their settings back as flags from :meth:`Settings.to_args`, so a whole deployment agrees.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from middlewares.core import Limits

WORK_KINDS = ("sleep", "cpu")
# What a service promises about a request it has accepted (docs/PROTOCOL.md, "Delivery
# guarantees"): at-least-once survives a crashed worker; at-most-once drops what it held.
GUARANTEES = ("at-least-once", "at-most-once")
#: The settings that are TCP ports, and the highest port there is.
PORT_FIELDS = ("insult_port", "filter_port", "echo_port", "pyro_ns_port")
MAX_PORT = 65535
#: The settings whose value is one of a few words, and those words.
CHOICES = {"work_kind": WORK_KINDS, "guarantee": GUARANTEES}
#: Settings a process that starts no XML-RPC or Pyro4 server and no InsultService never
#: reads: a command that runs only clients in namespaces and ports of its own, or only
#: RabbitMQ workers, leaves them off its command line (see :func:`add_arguments`).
SERVER_ONLY = (
    "host",
    "advertise_host",
    "coordinator_host",
    *PORT_FIELDS,
    "broadcast_interval",
    "load_defaults",
)


def _setting(default: Any, help_text: str) -> Any:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class Settings:
    """Where the services live and how they behave; each field's help says what it is."""

    namespace: str = _setting(
        "insultbench", "prefix of every queue, key, channel, exchange and registered name"
    )
    host: str = _setting(
        "127.0.0.1",
        "address XML-RPC and Pyro4 servers (nodes, coordinators, subscribers' callback "
        "servers) listen on; 0.0.0.0 for every interface",
    )
    advertise_host: str = _setting(
        "",
        "address this process gives others to reach it (a node's URL, a Pyro URI, a "
        "subscriber's callback); empty: the listen address, or on 0.0.0.0 the address of "
        "the interface that routes to the coordinator",
    )
    coordinator_host: str = _setting(
        "127.0.0.1",
        "where the XML-RPC master and filter front and the Pyro4 name server are found "
        "(the one-node XML-RPC and Pyro4 services too)",
    )
    insult_port: int = _setting(8100, "XML-RPC port of the InsultService")
    filter_port: int = _setting(8101, "XML-RPC port of the InsultFilter front")
    echo_port: int = _setting(8102, "XML-RPC port of the bare echo baseline")
    pyro_ns_port: int = _setting(9090, "port of the Pyro4 name server")
    redis_url: str = _setting("redis://127.0.0.1:6379/0", "Redis server")
    amqp_url: str = _setting("amqp://guest:guest@127.0.0.1:5672/%2F", "RabbitMQ server")
    broadcast_interval: float = _setting(5.0, "seconds between two broadcasts")
    timeout: float = _setting(10.0, "seconds any single network call may take")
    result_limit: int = _setting(1000, "filtered texts a filter keeps for get_results")
    max_text_bytes: int = _setting(64 * 1024, "largest text the filter accepts, in UTF-8 bytes")
    insult_refresh: float = _setting(0.5, "seconds between two insult-list reads by a filter")
    work_ms: float = _setting(0.0, "simulated service time per request or task, in ms")
    work_kind: str = _setting(
        "sleep", "how work_ms is spent (cpu: one request at a time per process)"
    )
    load_defaults: bool = _setting(True, "whether an InsultService adds the default insults")
    delivery_limit: int = _setting(
        3,
        "times a message may crash or time out its consumer before it is set aside on the "
        "queue's dead-letter list (Redis, RabbitMQ)",
    )

    guarantee: str = _setting(
        "at-least-once",
        "delivery guarantee: at-least-once (confirms, acks, leases) or at-most-once "
        "(none of them; a crashed worker loses what it held)",
    )

    def __post_init__(self) -> None:
        for name in PORT_FIELDS:
            if not 0 <= getattr(self, name) <= MAX_PORT:
                raise ValueError(f"{name} must be 0 to {MAX_PORT}, got {getattr(self, name)}")
        if not self.namespace or any(c.isspace() for c in self.namespace):
            raise ValueError(f"namespace must be a non-empty word, got {self.namespace!r}")
        if self.work_kind not in WORK_KINDS:
            raise ValueError(f"work_kind must be one of {WORK_KINDS}, got {self.work_kind!r}")
        if self.guarantee not in GUARANTEES:
            raise ValueError(f"guarantee must be one of {GUARANTEES}, got {self.guarantee!r}")
        if self.delivery_limit < 1:
            raise ValueError(f"delivery_limit must be at least 1, got {self.delivery_limit}")
        for name in ("broadcast_interval", "timeout", "insult_refresh"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def limits(self) -> Limits:
        """The domain limits these settings imply."""
        return Limits(max_text_bytes=self.max_text_bytes)

    def with_changes(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def to_args(self) -> list[str]:
        """These settings as command-line flags, for starting a child process."""
        args: list[str] = []
        for item in fields(self):
            args += [_flag(item.name), str(getattr(self, item.name))]
        return args

    def as_dict(self) -> dict[str, Any]:
        """These settings as a plain dict, for JSON reports."""
        return asdict(self)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Defaults overridden by ``INSULTBENCH_<FIELD>``, ``REDIS_URL`` and ``AMQP_URL``."""
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for item in fields(cls):
            raw = environ.get(_env_name(item.name))
            if raw is not None:
                values[item.name] = _convert(item.name, raw)
        return cls(**values)


_ENV_ALIASES = {"redis_url": "REDIS_URL", "amqp_url": "AMQP_URL"}


def _env_name(name: str) -> str:
    return _ENV_ALIASES.get(name, f"INSULTBENCH_{name.upper()}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_bool(raw: str) -> bool:
    if raw.lower() in _TRUE | _FALSE:
        return raw.lower() in _TRUE
    raise ValueError(f"{raw!r} is not a boolean")


def _parser_for(name: str) -> Callable[[str], Any]:
    kind = type(getattr(Settings, name))
    return _parse_bool if kind is bool else kind


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a port is a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"a port is 0 to {MAX_PORT}, got {value}")
    return value


def _flag_type(name: str) -> Callable[[str], Any]:
    """The argparse type of a setting's flag: its parser, with messages that say what
    is expected (argparse would print ``invalid _parse_bool value``)."""
    if name in PORT_FIELDS:
        return port
    parse = _parser_for(name)
    kind = type(getattr(Settings, name))
    expected = (
        "true or false (also yes/no, on/off, 1/0)"
        if kind is bool
        else {int: "a whole number", float: "a number"}.get(kind, "text")
    )

    def parse_flag(text: str) -> Any:
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None

    return parse_flag


def _convert(name: str, raw: str) -> Any:
    kind = type(getattr(Settings, name))
    try:
        return _parser_for(name)(raw)
    except ValueError:
        raise ValueError(f"{_env_name(name)}={raw!r} is not a valid {kind.__name__}") from None


def add_arguments(
    parser: argparse.ArgumentParser,
    only: Iterable[str] | None = None,
    leave_out: Iterable[str] = (),
    defaults: dict[str, str] | None = None,
    note: str = "also read from INSULTBENCH_<NAME>, REDIS_URL and AMQP_URL",
) -> None:
    """Add one flag per :class:`Settings` field (those in ``only`` if given, less those
    in ``leave_out``), defaulting to the environment's value.

    A command lists only the settings it really reads, so its ``--help`` names no flag
    that does nothing there. The others are still accepted, unlisted, so that a full
    :meth:`Settings.to_args` command line (how a harness or a parent process hands on
    its settings) parses anywhere. ``defaults`` replaces the default shown for a field whose
    value the command chooses itself (e.g. a fresh namespace); ``note`` describes the
    group.
    """
    chosen = set(only) if only is not None else {item.name for item in fields(Settings)}
    chosen -= set(leave_out)
    shown = defaults or {}
    group = parser.add_argument_group("settings", note)
    for item in fields(Settings):
        default = shown.get(item.name, getattr(Settings, item.name))
        choices = CHOICES.get(item.name)
        listed = item.name in chosen
        (group if listed else parser).add_argument(
            _flag(item.name),
            dest=f"settings_{item.name}",
            type=_flag_type(item.name),
            default=None,
            choices=choices,
            metavar="{" + ",".join(choices) + "}" if choices else item.name.upper(),
            # argparse %-formats help strings; the AMQP URL's %2F must survive that.
            help=f"{item.metadata['help']} (default: {default})".replace("%", "%%")
            if listed
            else argparse.SUPPRESS,
        )


def from_args(args: argparse.Namespace) -> Settings:
    """The settings given by the environment and then the flags of :func:`add_arguments`."""
    base = Settings.from_env()
    changes = {
        item.name: getattr(args, f"settings_{item.name}")
        for item in fields(Settings)
        if getattr(args, f"settings_{item.name}", None) is not None
    }
    return base.with_changes(**changes)
