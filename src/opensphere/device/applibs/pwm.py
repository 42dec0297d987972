"""Pulse-width modulation controllers (LED dimming, fan speed)."""

from __future__ import annotations

from typing import Literal

from . import _client


def apply(
    controller: int | str,
    channel: int,
    *,
    period_ns: int,
    duty_cycle_ns: int,
    enabled: bool = True,
    polarity: Literal["normal", "inversed"] = "normal",
) -> None:
    """Set one channel's period, duty cycle, polarity and whether it runs."""
    _client.call(
        "pwm.apply",
        controller=controller,
        channel=channel,
        period_ns=period_ns,
        duty_cycle_ns=duty_cycle_ns,
        enabled=enabled,
        polarity=polarity,
    )
