"""One connection to the runtime, shared by every applibs module of the app process."""

from __future__ import annotations

import base64
import errno
import os
import socket
import threading
from typing import Any, NoReturn

from . import protocol

_lock = threading.Lock()
_connection: socket.socket | None = None


def call(op: str, **args: Any) -> Any:
    """Ask the runtime for ``op``; refusals raise PermissionError, bad arguments ValueError."""
    result, fds = _exchange(op, args)
    for fd in fds:
        os.close(fd)
    return result


def call_for_socket(op: str, **args: Any) -> socket.socket:
    """Like ``call``, for operations whose answer is a socket passed with the response."""
    _, fds = _exchange(op, args)
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise RuntimeError(f"the runtime sent no socket for {op}")
    return socket.socket(fileno=fds[0])


def encode(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def decode(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _exchange(op: str, args: dict[str, Any]) -> tuple[Any, list[int]]:
    with _lock:
        connection = _connect()
        protocol.send_message(connection, {"op": op, "args": args})
        received = protocol.receive_message(connection, accept_fds=True)
    if received is None:
        raise ConnectionError(errno.EPIPE, "the runtime closed the applibs connection")
    response, fds = received
    if response.get("ok") is True:
        return response.get("result"), fds
    for fd in fds:
        os.close(fd)
    _raise(response.get("error"))


def _connect() -> socket.socket:
    global _connection
    if _connection is None:
        value = os.environ.get(protocol.ENV_FD)
        if value is None or not value.isdigit():
            raise RuntimeError(f"not under the OpenSphere runtime: {protocol.ENV_FD} is not set")
        _connection = socket.socket(fileno=int(value))
    return _connection


def _raise(error: object) -> NoReturn:
    if not isinstance(error, dict):
        raise RuntimeError("malformed response from the runtime")
    message = str(error.get("message", ""))
    kind = error.get("kind")
    if kind == protocol.PERMISSION:
        raise PermissionError(errno.EPERM, message)
    if kind == protocol.INVALID:
        raise ValueError(message)
    code = error.get("errno")
    if kind == protocol.OS_ERROR and isinstance(code, int):
        raise OSError(code, message)
    raise RuntimeError(message)
