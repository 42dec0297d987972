"""The day plan: which device does what on which simulated day; pure, from a seed.

Everything random in a simulation is drawn here, up front, from `random.Random(seed)`, so a
run is reproducible from its seed and the shell only carries the plan out. Per device and day:
online or not (offline periods of a few days), when its daily check runs (attest when due,
check for updates, upload error reports), when its app crashes, whether the power goes off
during that day's update check (and at which durable file-system step), whether it reboots.

Fleet events happen at the start of a day, before devices act: the first app deployment on
day 0 (whole group), an OS release on the Retail feed, and a second deployment to part of the
group (a staged rollout), so "every deployment reached every eligible device" means something.

Every device is online on the last day, so the run ends with a fleet that had every chance to
converge; offline periods end before it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

DAY_SECONDS: Final = 86_400
MAX_CUT_STEP: Final = 160  # an OS + app install takes about 100 durable steps


@dataclass(frozen=True)
class Rates:
    """How often things happen, per device and simulated day."""

    crashes_per_day: float = 0.5
    power_cut: float = 0.1
    offline: float = 0.05
    max_offline_days: int = 2
    reboot: float = 0.1

    def __post_init__(self) -> None:
        for name in ("power_cut", "offline", "reboot"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability, between 0 and 1")
        if self.crashes_per_day < 0 or self.max_offline_days < 1:
            raise ValueError("crashes per day must be ≥ 0 and offline periods ≥ 1 day")


@dataclass(frozen=True)
class SimConfig:
    devices: int
    days: int
    seed: int
    rates: Rates = field(default_factory=Rates)
    second_rollout_percentage: int = 50

    def __post_init__(self) -> None:
        if self.devices < 1 or self.days < 1:
            raise ValueError("a simulation needs at least one device and one day")
        if not 1 <= self.second_rollout_percentage <= 100:
            raise ValueError("a rollout percentage is between 1 and 100")


class FleetEventKind(StrEnum):
    DEPLOY_APP = "deploy-app"
    PUBLISH_OS = "publish-os"


@dataclass(frozen=True)
class FleetEvent:
    """Something the operator or the tenant does at the start of `day`."""

    day: int
    kind: FleetEventKind
    version: str
    rollout_percentage: int = 100


@dataclass(frozen=True)
class DeviceDay:
    """One device's simulated day; times are seconds into the day."""

    online: bool
    check_at: int
    crash_times: tuple[int, ...] = ()
    power_cut_step: int | None = None
    reboot_at: int | None = None


@dataclass(frozen=True)
class Plan:
    config: SimConfig
    fleet_events: tuple[FleetEvent, ...]
    days: tuple[tuple[DeviceDay, ...], ...]  # [day][device]

    def device_days(self, device: int) -> list[DeviceDay]:
        return [day[device] for day in self.days]

    def online_days(self, device: int) -> list[int]:
        return [number for number, day in enumerate(self.days) if day[device].online]

    def offline_periods(self) -> int:
        """Stretches of consecutive offline days, over all devices."""
        periods = 0
        for device in range(self.config.devices):
            was_online = True
            for day in self.days:
                if was_online and not day[device].online:
                    periods += 1
                was_online = day[device].online
        return periods

    def planned_crashes(self) -> int:
        return sum(len(device.crash_times) for day in self.days for device in day)


def fleet_events(days: int, second_rollout_percentage: int) -> tuple[FleetEvent, ...]:
    """App 1.0.0 everywhere on day 0; OS 2.0.0 a third in; app 2.0.0 to a share later."""
    events = [FleetEvent(0, FleetEventKind.DEPLOY_APP, "1.0.0")]
    if days >= 2:
        events.append(FleetEvent(max(1, days // 3), FleetEventKind.PUBLISH_OS, "2.0.0"))
        events.append(
            FleetEvent(
                max(1, (2 * days) // 3),
                FleetEventKind.DEPLOY_APP,
                "2.0.0",
                rollout_percentage=second_rollout_percentage,
            )
        )
    return tuple(events)


def make_plan(config: SimConfig) -> Plan:
    """The whole run's plan; the same config (seed included) gives the same plan."""
    rng = random.Random(config.seed)  # noqa: S311 - reproducible simulation, not cryptography
    rates = config.rates
    offline_until = [-1] * config.devices
    days: list[tuple[DeviceDay, ...]] = []
    last = config.days - 1
    for number in range(config.days):
        row = []
        for device in range(config.devices):
            if number < last and offline_until[device] < number and rng.random() < rates.offline:
                length = rng.randint(1, rates.max_offline_days)
                offline_until[device] = min(number + length - 1, last - 1)
            online = offline_until[device] < number
            crashes = tuple(
                sorted(
                    rng.randrange(DAY_SECONDS) for _ in range(_poisson(rng, rates.crashes_per_day))
                )
            )
            cut = (
                rng.randint(1, MAX_CUT_STEP) if online and rng.random() < rates.power_cut else None
            )
            reboot = rng.randrange(DAY_SECONDS) if rng.random() < rates.reboot else None
            row.append(
                DeviceDay(
                    online=online,
                    check_at=rng.randrange(DAY_SECONDS),
                    crash_times=crashes,
                    power_cut_step=cut,
                    reboot_at=reboot,
                )
            )
        days.append(tuple(row))
    return Plan(
        config=config,
        fleet_events=fleet_events(config.days, config.second_rollout_percentage),
        days=tuple(days),
    )


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means of a day's crashes."""
    if mean <= 0:
        return 0
    limit, product, count = math.exp(-mean), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count
