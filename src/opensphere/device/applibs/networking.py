"""Network access through the runtime's broker: the app's own network has no route out.

``connect`` and the server functions return sockets the runtime opened after checking the
manifest (``AllowedConnections``, ``AllowedTcpServerPorts``, ``AllowedUdpServerPorts``). They are
Unix sockets relayed by the runtime to the real connection, so the app never holds a socket it
could point somewhere else.
"""

from __future__ import annotations

import ipaddress
import socket

from . import _client
from .protocol import UDP_PEER


def connect(host: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A stream connected to ``host``:``port`` (TCP on the device's side)."""
    return _client.call_for_socket("net.connect", host=host, port=port, timeout=timeout)


def listen_tcp(port: int, backlog: int = 8) -> socket.socket:
    """A listening socket: each ``accept()`` returns one inbound TCP connection to ``port``."""
    return _client.call_for_socket("net.listen_tcp", port=port, backlog=backlog)


class UdpServer:
    """Datagrams to and from a UDP server port. Replies go only to peers that sent first."""

    def __init__(self, port: int) -> None:
        self._socket = _client.call_for_socket("net.udp_server", port=port)

    def recvfrom(self, size: int = 65535) -> tuple[bytes, tuple[str, int]]:
        packet = self._socket.recv(size + UDP_PEER.size)
        address, port = UDP_PEER.unpack_from(packet)
        return packet[UDP_PEER.size :], (str(ipaddress.IPv4Address(address)), port)

    def sendto(self, data: bytes, peer: tuple[str, int]) -> None:
        address = ipaddress.IPv4Address(peer[0]).packed
        self._socket.send(UDP_PEER.pack(address, peer[1]) + bytes(data))

    def settimeout(self, timeout: float | None) -> None:
        self._socket.settimeout(timeout)

    def fileno(self) -> int:
        return self._socket.fileno()

    def close(self) -> None:
        self._socket.close()
