"""The wire between an app and the runtime: a 4-byte big-endian length, then one JSON object.

A file descriptor (a socket the runtime opened for the app) travels as SCM_RIGHTS ancillary
data with the first bytes of a response. Both sides import this module, so they frame messages
the same way; it uses the standard library only because it is copied into every app's sandbox.
"""

from __future__ import annotations

import array
import json
import socket
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final

# The environment variable holding the number of the app's connection to the runtime.
ENV_FD: Final = "OPENSPHERE_APPLIBS_FD"
MAX_FRAME: Final = 256 * 1024
MAX_FDS: Final = 1
_HEADER: Final = struct.Struct(">I")
# Each datagram on a UDP server socket starts with the peer: IPv4 address, then port.
UDP_PEER: Final = struct.Struct(">4sH")

# Error kinds: a failed call answers ``{"ok": false, "error": {"kind", "message", "errno"}}``.
PERMISSION: Final = "permission"
INVALID: Final = "invalid"
OS_ERROR: Final = "os"


class ProtocolError(Exception):
    """The peer broke the framing: oversized, truncated or not a JSON object."""


def send_message(sock: socket.socket, message: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    """Send one framed message, with ``fds`` attached to its first byte."""
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"message of {len(body)} bytes exceeds {MAX_FRAME}")
    data = _HEADER.pack(len(body)) + body
    sent = socket.send_fds(sock, [data], list(fds)) if fds else 0
    sock.sendall(data[sent:])


def receive_message(
    sock: socket.socket, *, accept_fds: bool = False
) -> tuple[dict[str, Any], list[int]] | None:
    """Receive one message and any descriptors sent with it; ``None`` at a clean end of stream.

    Without ``accept_fds`` no control buffer is offered, so the kernel discards (closes) any
    descriptors the peer tries to send.
    """
    fds: list[int] = []
    wanted = fds if accept_fds else None
    try:
        header = _receive_exactly(sock, _HEADER.size, wanted)
        if header is None:
            return None
        (size,) = _HEADER.unpack(header)
        if size > MAX_FRAME:
            raise ProtocolError(f"message of {size} bytes exceeds {MAX_FRAME}")
        body = _receive_exactly(sock, size, wanted)
        if body is None:
            raise ProtocolError("connection closed inside a message")
        try:
            message = json.loads(body.decode("utf-8"))
        except ValueError as exc:
            raise ProtocolError(f"not JSON: {exc}") from exc
        if not isinstance(message, dict):
            raise ProtocolError("a message must be a JSON object")
    except BaseException:
        _close_all(fds)
        raise
    return message, fds


def _receive_exactly(sock: socket.socket, size: int, fds: list[int] | None) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        if fds is None:
            chunk = sock.recv(size - len(chunks))
        else:
            chunk, ancillary, flags, _ = sock.recvmsg(
                size - len(chunks), socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
            )
            fds.extend(_descriptors(ancillary))
            if flags & socket.MSG_CTRUNC:
                raise ProtocolError("too many descriptors")
        if not chunk:
            if chunks:
                raise ProtocolError("connection closed inside a message")
            return None
        chunks += chunk
    return bytes(chunks)


def _descriptors(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    found: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            found.extend(fds)
    return found


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        socket.close(fd)
