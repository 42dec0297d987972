"""Serial ports. On a virtual board a UART loops back: what an app writes it can read again."""

from __future__ import annotations

from . import _client


def open(uart: int | str) -> int:
    """Open a UART; returns a handle."""
    return int(_client.call("uart.open", uart=uart))


def write(handle: int, data: bytes) -> int:
    """Queue ``data`` for sending; returns how many bytes were accepted."""
    return int(_client.call("uart.write", handle=handle, data=_client.encode(data)))


def read(handle: int, size: int) -> bytes:
    """Up to ``size`` received bytes, without waiting; ``b""`` when none are pending."""
    return _client.decode(_client.call("uart.read", handle=handle, size=size))


def close(handle: int) -> None:
    _client.call("uart.close", handle=handle)
