"""The app firewall's broker: the only way an app's traffic leaves its network namespace.

An isolated app's namespace has loopback and nothing else. When the app asks applibs for a
connection, the broker (in the runtime, on the device's network) checks the manifest, opens
the TCP connection itself and hands the app one end of a Unix socket pair, relaying bytes
between the two. It never hands over the TCP socket: a socket keeps the namespace it was made
in, and Linux lets its holder disconnect it (``connect`` with ``AF_UNSPEC``) and connect it
again anywhere, which would turn one allowed connection into an open door.

Server ports work the same way: the runtime binds the TCP or UDP port the manifest allows and
gives the app a Unix listening socket (one relayed connection per inbound TCP connection) or
a Unix datagram socket (each datagram prefixed with its peer, ``protocol.UDP_PEER``). A UDP
app may only reply to peers that sent to it in the last ``UDP_REPLY_WINDOW`` seconds.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import selectors
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from opensphere.device.applibs.protocol import UDP_PEER
from opensphere.device.runtime.policy import (
    CapabilityError,
    Grants,
    check_connection,
    check_server_port,
    ipv4_address,
)

ALL_INTERFACES: Final = "0.0.0.0"  # noqa: S104 - server ports are for the network to reach
MAX_TIMEOUT: Final = 60.0
UDP_REPLY_WINDOW: Final = 300.0
_UDP_PEERS: Final = 256
_CHUNK: Final = 65536

log = logging.getLogger(__name__)


class NetworkBroker:
    """Settings shared by every app's sessions."""

    def __init__(self, *, server_address: str = ALL_INTERFACES, max_connections: int = 32) -> None:
        self.server_address = server_address
        self.max_connections = max_connections

    def session(
        self, grants: Grants, *, on_refusal: Callable[[CapabilityError], None]
    ) -> NetworkSession:
        return NetworkSession(self, grants, on_refusal=on_refusal)


class NetworkSession:
    """The connections and server ports of one run of one app; all closed when it ends."""

    def __init__(
        self,
        broker: NetworkBroker,
        grants: Grants,
        *,
        on_refusal: Callable[[CapabilityError], None],
    ) -> None:
        self._broker = broker
        self._grants = grants
        self._on_refusal = on_refusal
        self._lock = threading.Lock()
        self._closed = False
        self._relays: set[_Relay] = set()
        self._servers: list[socket.socket] = []

    def connect(self, host: str, port: int, timeout: float) -> socket.socket:
        """The app's end of a relayed connection to an allowed ``host``."""
        allowed = check_connection(self._grants, host)
        self._check_capacity()
        flags = socket.AI_NUMERICHOST if ipv4_address(allowed) is not None else 0
        addresses = socket.getaddrinfo(
            allowed, port, family=socket.AF_INET, type=socket.SOCK_STREAM, flags=flags
        )
        failure: OSError = OSError(errno.EHOSTUNREACH, f"{host} has no IPv4 address")
        for *_, (address, port_number, *_) in addresses:
            try:
                outside = socket.create_connection(
                    (str(address), port_number), timeout=min(timeout, MAX_TIMEOUT)
                )
            except OSError as exc:
                failure = exc
                continue
            outside.settimeout(None)
            return self._relay_to_app(outside)
        raise failure

    def listen_tcp(self, port: int, backlog: int) -> socket.socket:
        """A Unix listening socket for the app; inbound TCP connections to ``port`` reach it."""
        check_server_port(self._grants, "tcp", port)
        outside = socket.create_server(
            (self._broker.server_address, port), backlog=backlog, reuse_port=False
        )
        inside = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        inside.bind("")  # an autobound abstract address: no file, no path length limit
        inside.listen(backlog)
        address = inside.getsockname()
        self._add_server(outside)
        threading.Thread(
            target=self._accept_loop, args=(outside, address), name=f"tcp-{port}", daemon=True
        ).start()
        return inside

    def udp_server(self, port: int) -> socket.socket:
        """A Unix datagram socket for the app, carrying ``port``'s datagrams with their peers."""
        check_server_port(self._grants, "udp", port)
        outside = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            outside.bind((self._broker.server_address, port))
        except OSError:
            outside.close()
            raise
        inside, app_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._add_server(outside)
        threading.Thread(
            target=self._udp_loop, args=(outside, inside, port), name=f"udp-{port}", daemon=True
        ).start()
        return app_end

    def close(self) -> None:
        with self._lock:
            self._closed = True
            relays, servers = list(self._relays), list(self._servers)
            self._servers.clear()
        for server in servers:
            _shut(server)
            server.close()
        for relay in relays:
            relay.close()

    def _check_capacity(self) -> None:
        with self._lock:
            if self._closed:
                raise OSError(errno.ESHUTDOWN, "the app is stopping")
            if len(self._relays) >= self._broker.max_connections:
                raise OSError(errno.EMFILE, "too many open connections for this app")

    def _add_server(self, server: socket.socket) -> None:
        with self._lock:
            if self._closed:
                server.close()
                raise OSError(errno.ESHUTDOWN, "the app is stopping")
            self._servers.append(server)

    def _relay_to_app(self, outside: socket.socket) -> socket.socket:
        inside, app_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._start_relay(outside, inside)
        return app_end

    def _start_relay(self, outside: socket.socket, inside: socket.socket) -> None:
        relay = _Relay(outside, inside, on_done=self._forget)
        with self._lock:
            if self._closed:
                relay.close()
                return
            self._relays.add(relay)
        relay.start()

    def _forget(self, relay: _Relay) -> None:
        with self._lock:
            self._relays.discard(relay)

    def _accept_loop(self, outside: socket.socket, app_address: str | bytes) -> None:
        while True:
            try:
                connection, _ = outside.accept()
            except OSError:
                return  # the session closed the listener
            inside = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self._check_capacity()
                inside.settimeout(1.0)  # the app may have stopped accepting
                inside.connect(app_address)
                inside.settimeout(None)
            except OSError as exc:
                log.info("dropping an inbound connection: %s", exc)
                connection.close()
                inside.close()
                continue
            self._start_relay(connection, inside)

    def _udp_loop(self, outside: socket.socket, inside: socket.socket, port: int) -> None:
        peers: OrderedDict[tuple[str, int], float] = OrderedDict()
        inside.setblocking(False)
        with selectors.DefaultSelector() as selector, inside:
            selector.register(outside, selectors.EVENT_READ)
            selector.register(inside, selectors.EVENT_READ)
            serving = True
            while serving and outside.fileno() != -1:
                for key, _ in selector.select(timeout=0.5):
                    try:
                        if key.fileobj is outside:
                            serving = self._udp_inbound(outside, inside, peers)
                        else:
                            serving = self._udp_reply(outside, inside, peers, port)
                    except (BlockingIOError, ConnectionRefusedError):
                        continue  # like UDP itself: a datagram nobody can take is dropped
                    except OSError:
                        serving = False
                    if not serving:
                        break

    def _udp_inbound(
        self,
        outside: socket.socket,
        inside: socket.socket,
        peers: OrderedDict[tuple[str, int], float],
    ) -> bool:
        data, peer = outside.recvfrom(_CHUNK)
        if peer is None:
            return False  # the session shut the socket down
        peers[peer] = time.monotonic()
        peers.move_to_end(peer)
        while len(peers) > _UDP_PEERS:
            peers.popitem(last=False)
        inside.send(UDP_PEER.pack(ipaddress.IPv4Address(peer[0]).packed, peer[1]) + data)
        return True

    def _udp_reply(
        self,
        outside: socket.socket,
        inside: socket.socket,
        peers: OrderedDict[tuple[str, int], float],
        port: int,
    ) -> bool:
        packet = inside.recv(_CHUNK + UDP_PEER.size)
        if len(packet) < UDP_PEER.size:
            return False  # the app closed its end (or broke the format): stop serving it
        address, peer_port = UDP_PEER.unpack_from(packet)
        peer = (str(ipaddress.IPv4Address(address)), peer_port)
        seen = peers.get(peer)
        if seen is None or time.monotonic() - seen > UDP_REPLY_WINDOW:
            self._on_refusal(
                CapabilityError(
                    "AllowedUdpServerPorts",
                    f"port {port} may only answer peers that sent to it, not {peer[0]}",
                )
            )
            return True
        outside.sendto(packet[UDP_PEER.size :], peer)
        return True


class _Relay:
    """Copies bytes both ways between a network socket and the app's Unix socket."""

    def __init__(
        self, outside: socket.socket, inside: socket.socket, *, on_done: Callable[[_Relay], None]
    ) -> None:
        self._sockets = (outside, inside)
        self._on_done = on_done
        self._lock = threading.Lock()
        self._running = 2

    def start(self) -> None:
        outside, inside = self._sockets
        for source, target in ((outside, inside), (inside, outside)):
            threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def close(self) -> None:
        for sock in self._sockets:
            _shut(sock)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(_CHUNK):
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()  # a reset on one side ends both directions
        with self._lock:
            self._running -= 1
            finished = self._running == 0
        if finished:
            for sock in self._sockets:
                sock.close()
            self._on_done(self)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
