"""The three addresses of a process that serves or is called back across machines.

An XML-RPC or Pyro4 process (a node, a coordinator, a subscriber's callback server) has:

- a listen address, ``settings.host`` (default 127.0.0.1): where it binds;
- an advertised address, ``settings.advertise_host``: what it gives others to reach it
  (a node's URL, a Pyro URI, a subscriber's notify address). Default: the listen
  address; on a wildcard (0.0.0.0, ::) the address of the interface that routes to the
  coordinator, ``settings.coordinator_host``;
- the coordinator's address, ``settings.coordinator_host`` (default 127.0.0.1): where
  the XML-RPC master and filter front and the Pyro4 name server are found.

Redis and RabbitMQ take URLs. Nothing here sends a packet: the interface that routes to
a host is read from the kernel's routing decision for an unconnected UDP socket.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse

from middlewares.settings import Settings

#: Listen addresses that mean "every interface".
WILDCARDS = frozenset({"0.0.0.0", "::", ""})

#: An address of TEST-NET-1 (RFC 5737), never used on a real network: the interface
#: that would route to it is the one holding the default route.
_OUTSIDE = "192.0.2.1"

#: Any port will do: an unconnected UDP socket's connect sends nothing.
_ANY_PORT = 9


def is_wildcard(host: str) -> bool:
    """True for a listen address that binds every interface."""
    return host in WILDCARDS


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and the loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def route_source(target: str) -> str | None:
    """The local address of the interface that routes to ``target`` (a name or an
    address), or None when this machine has no route there."""
    try:
        family, _, _, _, address = socket.getaddrinfo(target, _ANY_PORT, type=socket.SOCK_DGRAM)[0]
    except (socket.gaierror, IndexError):
        return None
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(address)
        except OSError:
            return None
        return str(probe.getsockname()[0])


def outward_address(target: str) -> str:
    """The address others reach this machine at, seen from ``target``: the interface
    routing to it; when ``target`` is this machine (a loopback address), the interface
    of the default route; loopback when there is neither."""
    source = route_source(target)
    if source is not None and not is_loopback(source):
        return source
    return route_source(_OUTSIDE) or "127.0.0.1"


def advertised_host(settings: Settings) -> str:
    """What a serving process of these settings gives others to reach it."""
    if settings.advertise_host:
        return settings.advertise_host
    if is_wildcard(settings.host):
        return outward_address(settings.coordinator_host)
    return settings.host


def node_host(settings: Settings) -> str:
    """The address a node reports as its host (in the results of a study): its
    advertised address when it sets one or listens on an address of its own, else the
    interface that routes to the deployment's Redis, where every node keeps state."""
    if settings.advertise_host:
        return settings.advertise_host
    if not is_wildcard(settings.host) and not is_loopback(settings.host):
        return settings.host
    redis_host = urllib.parse.urlsplit(settings.redis_url).hostname or "127.0.0.1"
    return route_source(redis_host) or "127.0.0.1"


def url_host(host: str) -> str:
    """``host`` as it goes in a URL or a Pyro location: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def exposure_warning(label: str, host: str) -> str | None:
    """The one warning line for a server of ``label`` (XML-RPC, Pyro4) listening on
    ``host``; None on loopback."""
    if is_loopback(host):
        return None
    return (
        f"warning: {label} listens on {host or 'every interface'} and has no authentication "
        "on its client protocol (the deployment secret guards only nodes and workers): "
        "keep it on a trusted network"
    )
