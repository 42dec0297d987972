"""The end-of-run checks, pure: plan, deployments and observations in, violations out.

What each device should run follows from the plan alone: a deployment reaches a device that is
in its rollout (`updates.rollout.in_rollout`, the function the device itself uses) and was
online while it was the group's current deployment; the OS release reaches every device online
after it was published. The shell observes each device twice — its folder (a fresh power-on)
and the service (its update status, attestation, stored error events) — and both must agree
with that expectation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final
from uuid import UUID

from opensphere.sim.plan import Plan
from opensphere.updates.rollout import Rollout, in_rollout

PASSED: Final = "Passed"


@dataclass(frozen=True)
class DeployedApp:
    """A deployment the simulation created, and its one app image."""

    day: int
    deployment_id: UUID
    image_id: UUID
    rollout_percentage: int


@dataclass(frozen=True)
class PublishedOs:
    day: int
    version: str


@dataclass(frozen=True)
class Expectations:
    initial_os_version: str
    deployments: tuple[DeployedApp, ...]
    os_release: PublishedOs | None


@dataclass(frozen=True)
class DeviceObservation:
    """One device at the end of the run, seen from its folder and from the service."""

    index: int
    device_id: str
    attestations: int
    service_attestation: str | None
    boot_error: str | None
    os_version: str | None
    app_images: frozenset[UUID]
    service_os_version: str | None
    service_images: frozenset[UUID]
    crashes_filed: int
    crashes_stored: int
    crashes_pending: int
    duplicate_event_ids: int
    errors: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Violation:
    device: int
    device_id: str
    invariant: str
    reason: str

    def __str__(self) -> str:
        return f"device {self.device} ({self.device_id[:16]}…): {self.invariant}: {self.reason}"


def expected_app(
    plan: Plan, expectations: Expectations, device: int, device_id: str
) -> UUID | None:
    """The app image the device must run at the end (None: no deployment reached it)."""
    online = plan.online_days(device)
    expected: UUID | None = None
    deployments = sorted(expectations.deployments, key=lambda d: d.day)
    for position, deployment in enumerate(deployments):
        ends = deployments[position + 1].day if position + 1 < len(deployments) else len(plan.days)
        rollout = Rollout(deployment.deployment_id, deployment.rollout_percentage, paused=False)
        if in_rollout(rollout, device_id) and any(deployment.day <= d < ends for d in online):
            expected = deployment.image_id
    return expected


def expected_os(plan: Plan, expectations: Expectations, device: int) -> str:
    release = expectations.os_release
    if release is not None and any(day >= release.day for day in plan.online_days(device)):
        return release.version
    return expectations.initial_os_version


def check_device(
    plan: Plan, expectations: Expectations, seen: DeviceObservation
) -> list[Violation]:
    def violation(invariant: str, reason: str) -> Violation:
        return Violation(seen.index, seen.device_id, invariant, reason)

    found = [violation("no error", error) for error in seen.errors]
    if seen.boot_error is not None:
        return [*found, violation("not bricked", f"does not boot: {seen.boot_error}")]
    if seen.attestations < 1 or seen.service_attestation != PASSED:
        found.append(
            violation(
                "attested",
                f"{seen.attestations} attestations, service says {seen.service_attestation}",
            )
        )
    app = expected_app(plan, expectations, seen.index, seen.device_id)
    wanted = frozenset() if app is None else frozenset({app})
    cloud = seen.app_images
    if cloud != wanted:
        found.append(
            violation("deployment reached", f"runs apps {_ids(cloud)}, not {_ids(wanted)}")
        )
    if app is not None and app not in seen.service_images:
        found.append(violation("deployment reached", f"service does not list image {app}"))
    os_version = expected_os(plan, expectations, seen.index)
    if seen.os_version != os_version or seen.service_os_version != os_version:
        found.append(
            violation(
                "OS release reached",
                f"runs OS {seen.os_version}, service says {seen.service_os_version}, "
                f"expected {os_version}",
            )
        )
    if seen.crashes_stored < seen.crashes_filed:
        found.append(
            violation(
                "no event lost",
                f"{seen.crashes_filed} crashes filed, {seen.crashes_stored} stored",
            )
        )
    if seen.crashes_stored > seen.crashes_filed or seen.duplicate_event_ids:
        found.append(
            violation(
                "no event duplicated",
                f"{seen.crashes_filed} crashes filed, {seen.crashes_stored} stored, "
                f"{seen.duplicate_event_ids} event ids stored twice",
            )
        )
    if seen.crashes_pending:
        found.append(
            violation("no event lost", f"{seen.crashes_pending} crashes never left the device")
        )
    return found


def check_fleet(
    plan: Plan, expectations: Expectations, observations: Sequence[DeviceObservation]
) -> list[Violation]:
    """Every device's violations; a device the run did not observe at all is one too."""
    found = [v for seen in observations for v in check_device(plan, expectations, seen)]
    observed = {seen.index for seen in observations}
    found += [
        Violation(index, "?" * 16, "observed", "the run left no observation of this device")
        for index in range(plan.config.devices)
        if index not in observed
    ]
    return found


def _ids(images: frozenset[UUID]) -> str:
    return "{" + ", ".join(sorted(str(i) for i in images)) + "}"
