"""What an update check decides, with no I/O: offered images and the device's state in, a plan out.

The group's TUF role lists two kinds of targets (see `opensphere.updates.repository`): the OS
images of the group's feed (no rollout: every device takes them) and the current deployment's
apps (with a rollout: a device takes them when `takes_update` says so, hawkBit-style). The plan
is the difference between that and what the device runs, minus images that already failed
here (a failed image is not retried until the service offers another one). A device in
development mode (appDevelopment capability) takes no cloud apps, as in the original. A Linux
host whose OS is not ours to update (`manages_os` False) takes only the apps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from opensphere.updates.rollout import Rollout, takes_update


class OfferError(ValueError):
    """A verified target's `custom` does not describe an image this agent understands."""


@dataclass(frozen=True, slots=True)
class OfferedImage:
    """One image target of the group's role, as its verified `custom` describes it."""

    target_path: str
    image_id: UUID
    component_id: UUID
    security_version: int
    rollout: Rollout | None

    @classmethod
    def from_custom(cls, target_path: str, custom: Mapping[str, Any]) -> OfferedImage:
        try:
            return cls(
                target_path=target_path,
                image_id=UUID(str(custom["image_id"])),
                component_id=UUID(str(custom["component_id"])),
                security_version=int(custom["security_version"]),
                rollout=Rollout.from_custom(custom),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise OfferError(f"target {target_path!r} has no usable image description") from exc

    @property
    def is_os(self) -> bool:
        return self.rollout is None


@dataclass(frozen=True, slots=True)
class DeviceImages:
    """What the device runs: OS images of its active slot and its cloud apps, by component."""

    os_images: Mapping[UUID, UUID]
    cloud_apps: Mapping[UUID, UUID]
    development_mode: bool = False
    failed_images: frozenset[UUID] = frozenset()
    manages_os: bool = True


@dataclass(frozen=True, slots=True)
class UpdatePlan:
    os_release: tuple[OfferedImage, ...] = ()
    install_apps: tuple[OfferedImage, ...] = ()
    remove_apps: tuple[UUID, ...] = ()
    deployment_id: UUID | None = None
    waiting_for_rollout: bool = False
    skipped_failed: tuple[UUID, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.os_release or self.install_apps or self.remove_apps)

    @property
    def downloads(self) -> tuple[OfferedImage, ...]:
        return self.os_release + self.install_apps


def plan_update(
    offered: Sequence[OfferedImage], device: DeviceImages, *, device_id: str
) -> UpdatePlan:
    os_offer = [image for image in offered if image.is_os]
    app_offer = [image for image in offered if not image.is_os]
    skipped: list[UUID] = []

    os_release: tuple[OfferedImage, ...] = ()
    running_os = set(device.os_images.values())
    if device.manages_os and os_offer and {i.image_id for i in os_offer} != running_os:
        failed = [i.image_id for i in os_offer if i.image_id in device.failed_images]
        if failed:
            skipped.extend(failed)
        else:
            os_release = tuple(os_offer)

    rollout = next((image.rollout for image in app_offer if image.rollout is not None), None)
    if rollout is None or device.development_mode:
        return UpdatePlan(os_release=os_release, skipped_failed=tuple(skipped))

    running = set(device.cloud_apps.values())
    missing = [image for image in app_offer if image.image_id not in running]
    if not missing and set(device.cloud_apps) <= {i.component_id for i in app_offer}:
        return UpdatePlan(
            os_release=os_release,
            deployment_id=rollout.deployment_id,
            skipped_failed=tuple(skipped),
        )
    if not takes_update(rollout, device_id):
        return UpdatePlan(
            os_release=os_release,
            deployment_id=rollout.deployment_id,
            waiting_for_rollout=True,
            skipped_failed=tuple(skipped),
        )
    failed = [image.image_id for image in missing if image.image_id in device.failed_images]
    if failed:
        # A deployment installs as a whole or not at all: one image failed here already.
        return UpdatePlan(
            os_release=os_release,
            deployment_id=rollout.deployment_id,
            skipped_failed=tuple(skipped + failed),
        )
    offered_components = {image.component_id for image in app_offer}
    return UpdatePlan(
        os_release=os_release,
        install_apps=tuple(missing),
        remove_apps=tuple(sorted(c for c in device.cloud_apps if c not in offered_components)),
        deployment_id=rollout.deployment_id,
        skipped_failed=tuple(skipped),
    )
