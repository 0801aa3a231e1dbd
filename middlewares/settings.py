"""Settings shared by every service, client and harness, as one frozen dataclass.

Every command line builds its :class:`Settings` the same way: defaults, then environment
variables, then flags (:func:`add_arguments` and :func:`from_args`). Child processes get
their settings back as flags from :meth:`Settings.to_args`, so a whole deployment agrees.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from middlewares.core import Limits

WORK_KINDS = ("sleep", "cpu")


@dataclass(frozen=True)
class Settings:
    """Where the services live and how they behave.

    Attributes:
        namespace: Prefix of every queue, key, channel, exchange and registered name.
        host: Address the XML-RPC and Pyro4 servers bind to and clients connect to.
        insult_port: XML-RPC port of the InsultService.
        filter_port: XML-RPC port of the InsultFilter front.
        echo_port: XML-RPC port of the bare echo server used as a baseline.
        pyro_ns_port: Port of the Pyro4 name server.
        redis_url: Redis server, e.g. ``redis://127.0.0.1:6379/0``.
        amqp_url: RabbitMQ server, e.g. ``amqp://guest:guest@127.0.0.1:5672/%2F``.
        broadcast_interval: Seconds between two broadcasts of a random insult.
        timeout: Seconds any single network call may take before it fails.
        result_limit: How many filtered texts a filter keeps for ``get_results``.
        max_text_bytes: Largest text the filter accepts, in bytes of UTF-8.
        insult_refresh: Seconds between two reads of the insult list by a filter worker.
        work_ms: Simulated service time added to every request or task, in milliseconds.
        work_kind: ``sleep`` (a node that waits) or ``cpu`` (a node that computes).
        load_defaults: Whether an InsultService adds the default insults when it starts.
    """

    namespace: str = "insultbench"
    host: str = "127.0.0.1"
    insult_port: int = 8100
    filter_port: int = 8101
    echo_port: int = 8102
    pyro_ns_port: int = 9090
    redis_url: str = "redis://127.0.0.1:6379/0"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    broadcast_interval: float = 5.0
    timeout: float = 10.0
    result_limit: int = 1000
    max_text_bytes: int = 64 * 1024
    insult_refresh: float = 0.5
    work_ms: float = 0.0
    work_kind: str = "sleep"
    load_defaults: bool = True

    def __post_init__(self) -> None:
        if not self.namespace or any(c.isspace() for c in self.namespace):
            raise ValueError(f"namespace must be a non-empty word, got {self.namespace!r}")
        if self.work_kind not in WORK_KINDS:
            raise ValueError(f"work_kind must be one of {WORK_KINDS}, got {self.work_kind!r}")
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
        for field in fields(self):
            args += [_flag(field.name), str(getattr(self, field.name))]
        return args

    def as_dict(self) -> dict[str, Any]:
        """These settings as a plain dict, for JSON reports."""
        return asdict(self)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Defaults overridden by ``INSULTBENCH_<FIELD>``, ``REDIS_URL`` and ``AMQP_URL``."""
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(_env_name(field.name))
            if raw is not None:
                values[field.name] = _convert(field.name, raw)
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


def _convert(name: str, raw: str) -> Any:
    kind = type(getattr(Settings, name))
    try:
        return _parser_for(name)(raw)
    except ValueError:
        raise ValueError(f"{_env_name(name)}={raw!r} is not a valid {kind.__name__}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per :class:`Settings` field, defaulting to the environment's value."""
    group = parser.add_argument_group(
        "settings", "also read from INSULTBENCH_<NAME>, REDIS_URL and AMQP_URL"
    )
    for field in fields(Settings):
        default = getattr(Settings, field.name)
        group.add_argument(
            _flag(field.name),
            dest=f"settings_{field.name}",
            type=_parser_for(field.name),
            default=None,
            metavar=field.name.upper(),
            help=f"(default: {default})",
        )


def from_args(args: argparse.Namespace) -> Settings:
    """The settings given by the environment and then the flags of :func:`add_arguments`."""
    base = Settings.from_env()
    changes = {
        field.name: getattr(args, f"settings_{field.name}")
        for field in fields(Settings)
        if getattr(args, f"settings_{field.name}", None) is not None
    }
    return base.with_changes(**changes)


def simulate_work(settings: Settings) -> None:
    """Spend ``settings.work_ms`` as the speedup study asks: sleeping or burning CPU."""
    if settings.work_ms <= 0:
        return
    seconds = settings.work_ms / 1000
    if settings.work_kind == "sleep":
        time.sleep(seconds)
        return
    deadline = time.perf_counter() + seconds
    value = 0.0
    while time.perf_counter() < deadline:
        value = math.sin(value + 1.0)
