"""The app's mutable storage: one file of at most ``MutableStorage.SizeKB`` kibibytes.

Only the app's own storage is reachable: calls name no path or app, and the runtime answers
each app on its own connection.
"""

from __future__ import annotations

from . import _client


def read() -> bytes:
    """The whole content; ``b""`` if nothing has been written."""
    return _client.decode(_client.call("storage.read"))


def write(data: bytes) -> None:
    """Replace the content atomically; over the quota raises OSError(EDQUOT), nothing changes."""
    _client.call("storage.write", data=_client.encode(data))


def append(data: bytes) -> None:
    """Add to the end, under the same quota as ``write``."""
    _client.call("storage.append", data=_client.encode(data))


def delete() -> None:
    """Remove the content."""
    _client.call("storage.delete")


def quota() -> int:
    """How many bytes the manifest grants."""
    return int(_client.call("storage.info")["quota"])
