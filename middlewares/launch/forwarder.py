"""A TCP forwarder that makes a service of the root namespace appear on an emulated host.

``python -m middlewares.launch.forwarder --netns NS --listen ADDR:PORT --to HOST:PORT``
(root only) opens its listening socket inside network namespace ``NS`` (by entering it
for that one call: a socket stays in the namespace it was made in), then returns to its
own namespace, where it connects each accepted connection to ``HOST:PORT``. So a
RabbitMQ listening on the machine's 127.0.0.1, which no namespace can reach, answers at
``ADDR:PORT`` on the emulated broker host, and traffic to it crosses that host's link
like traffic to a broker running there.

Each connection is two threads copying bytes, with TCP_NODELAY on both sides; every
connect has a timeout, and a connection whose upstream cannot be reached is closed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import socket
import sys
import threading

from middlewares.runtime import StopSignal, configure_logging, run_main

log = logging.getLogger(__name__)

#: The flag of ``setns(2)`` for a network namespace.
CLONE_NEWNET = 0x40000000

#: Seconds a connection to the upstream service may take to open.
CONNECT_TIMEOUT = 5.0

#: Bytes copied per read.
CHUNK = 256 * 1024


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns failed: {os.strerror(error)}")


def listen_in(namespace: str | None, address: tuple[str, int]) -> socket.socket:
    """A listening socket on ``address`` inside network namespace ``namespace`` (None:
    this process's own)."""
    if namespace is None:
        return socket.create_server(address, backlog=128)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            server = socket.create_server(address, backlog=128)
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)
    return server


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy ``source`` to ``target`` until either side closes."""
    try:
        while data := source.recv(CHUNK):
            target.sendall(data)
    except OSError:
        pass
    finally:
        # Half-close so the other side sees the end, and the other pump ends too.
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            source.shutdown(socket.SHUT_RD)


def _relay(client: socket.socket, upstream_address: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(upstream_address, timeout=CONNECT_TIMEOUT)
    except OSError as error:
        log.warning("cannot reach %s:%d: %s", *upstream_address, error)
        client.close()
        return
    upstream.settimeout(None)
    for sock in (client, upstream):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def forward(server: socket.socket, upstream: tuple[str, int], stop: StopSignal) -> None:
    """Accept on ``server`` and relay every connection to ``upstream`` until ``stop``."""
    server.settimeout(0.2)
    while not stop.is_set():
        try:
            client, _ = server.accept()
        except TimeoutError:
            continue
        client.settimeout(None)
        threading.Thread(target=_relay, args=(client, upstream), daemon=True).start()
    server.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT") from None


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m middlewares.launch.forwarder``."""
    parser = argparse.ArgumentParser(
        prog="python -m middlewares.launch.forwarder",
        description="Listen on ADDR:PORT (inside network namespace NS: root only) and "
        "forward every connection to HOST:PORT of this process's own namespace.",
    )
    parser.add_argument(
        "--netns", help="network namespace to listen in (default: this process's own)"
    )
    parser.add_argument("--listen", type=_address, required=True, metavar="ADDR:PORT")
    parser.add_argument("--to", type=_address, required=True, metavar="HOST:PORT")
    args = parser.parse_args(argv)
    configure_logging("forwarder")
    stop = StopSignal()

    def serve() -> int:
        try:
            server = listen_in(args.netns, args.listen)
        except OSError as error:
            where = f"{args.listen[0]}:{args.listen[1]} in {args.netns or 'this namespace'}"
            print(f"error: cannot listen on {where}: {error}", file=sys.stderr)
            return 1
        log.info("forwarding %s:%d to %s:%d", *args.listen, *args.to)
        forward(server, args.to, stop)
        return 0

    run_main(serve)


if __name__ == "__main__":
    main()
