"""I2C master interfaces: register reads and writes to devices on a bus."""

from __future__ import annotations

from . import _client


def write(bus: int | str, address: int, data: bytes) -> int:
    """Write ``data`` to the device at ``address``; returns the bytes written."""
    _client.call("i2c.transfer", bus=bus, address=address, write=_client.encode(data), read=0)
    return len(data)


def write_read(bus: int | str, address: int, data: bytes, count: int) -> bytes:
    """Write ``data`` (typically a register number), then read ``count`` bytes."""
    result = _client.call(
        "i2c.transfer", bus=bus, address=address, write=_client.encode(data), read=count
    )
    return _client.decode(result)


def read(bus: int | str, address: int, count: int) -> bytes:
    return write_read(bus, address, b"", count)
