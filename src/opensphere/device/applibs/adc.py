"""Analog-to-digital converters: where an app reads its sensors."""

from __future__ import annotations

from . import _client


def read(controller: int | str, channel: int) -> int:
    """One sample from ``channel``, between 0 and 2**sample_bits - 1."""
    return int(_client.call("adc.read", controller=controller, channel=channel))


def sample_bits(controller: int | str) -> int:
    return int(_client.call("adc.info", controller=controller)["sample_bits"])


def reference_voltage(controller: int | str) -> float:
    """The voltage that a full-scale sample stands for."""
    return float(_client.call("adc.info", controller=controller)["reference_voltage"])
