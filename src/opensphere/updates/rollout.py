"""Staged rollout, decided without a row per device (hawkBit-style percentages and halting).

A deployment's targets carry `custom["rollout"]` (see `Rollout.custom`). Each device decides
for itself whether it is in the rollout: a deterministic hash of (deployment ID, device ID)
puts it in one of 10,000 buckets, and a rollout at P percent takes buckets below 100·P. Raising
the percentage only adds devices; the service computes the same function when it counts. The
service halts a deployment when too many of the devices that reported an outcome failed
(`should_halt`); a halted or paused rollout is published with `paused` set, so devices that
have not installed it yet wait, and devices that did keep it.

The device side, in order: verify the target with TUF; if `custom` has no rollout it is an OS
image of the group's feed (always applies); otherwise install only if `takes_update(rollout,
device_id)` or the device already runs that image ID.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

BUCKETS: Final = 10_000


@dataclass(frozen=True)
class Rollout:
    """How far a deployment goes: its ID, the share of the group, and whether it is held."""

    deployment_id: UUID
    percentage: int
    paused: bool

    def __post_init__(self) -> None:
        if not 1 <= self.percentage <= 100:
            raise ValueError("a rollout percentage is between 1 and 100")

    def custom(self) -> dict[str, Any]:
        return {
            "deployment_id": str(self.deployment_id),
            "percentage": self.percentage,
            "paused": self.paused,
        }

    @classmethod
    def from_custom(cls, custom: Mapping[str, Any]) -> Rollout | None:
        """The rollout a verified target's `custom` carries; None for feed (OS) images."""
        rollout = custom.get("rollout")
        if rollout is None:
            return None
        try:
            return cls(
                deployment_id=UUID(str(rollout["deployment_id"])),
                percentage=int(rollout["percentage"]),
                paused=bool(rollout["paused"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed rollout in target custom: {rollout!r}") from exc


def rollout_bucket(deployment_id: UUID, device_id: str) -> int:
    """The device's bucket (0 to 9,999) for this deployment: same inputs, same bucket."""
    digest = hashlib.sha256(f"{deployment_id}:{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_rollout(rollout: Rollout, device_id: str) -> bool:
    """Whether the percentage reaches this device (paused or not)."""
    return rollout_bucket(rollout.deployment_id, device_id) < rollout.percentage * BUCKETS // 100


def takes_update(rollout: Rollout, device_id: str) -> bool:
    """Whether a device that does not run the deployment yet should install it now."""
    return not rollout.paused and in_rollout(rollout, device_id)


def should_halt(*, installed: int, failed: int, threshold: int, min_reports: int) -> bool:
    """Halt once at least `min_reports` outcomes are in and more than `threshold`% failed."""
    outcomes = installed + failed
    return outcomes >= min_reports and failed * 100 > threshold * outcomes
