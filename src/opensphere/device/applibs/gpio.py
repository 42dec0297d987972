"""General-purpose I/O pins, opened by number or board name (``8`` or ``"$HEATER"``)."""

from __future__ import annotations

from typing import Final

from . import _client

LOW: Final = 0
HIGH: Final = 1


def open_output(gpio: int | str, initial: int = LOW) -> int:
    """Open a pin for output, driving ``initial`` at once; returns a handle."""
    return int(_client.call("gpio.open", gpio=gpio, direction="output", initial=initial))


def open_input(gpio: int | str) -> int:
    """Open a pin for input; returns a handle."""
    return int(_client.call("gpio.open", gpio=gpio, direction="input"))


def set_value(handle: int, value: int) -> None:
    _client.call("gpio.set", handle=handle, value=value)


def get_value(handle: int) -> int:
    return int(_client.call("gpio.get", handle=handle))


def close(handle: int) -> None:
    _client.call("gpio.close", handle=handle)
