"""Device errors, in two roots as in python-tuf: refused input versus a damaged device.

``ImageRefusedError`` and ``CapabilityRequiredError`` mean something from outside is not
acceptable (bad signature, downgrade, missing capability): the device stays as it was.
``DeviceStateError`` means the device's own flash is missing or damaged: it needs recovery.
"""

from __future__ import annotations

from uuid import UUID


class DeviceError(Exception):
    """Root of every error the device OS raises on purpose."""


class DeviceStateError(DeviceError):
    """The device folder is missing a part or holds damaged state."""


class ImageRefusedError(DeviceError):
    """An image is not acceptable on this device; ``reason`` says why in user terms."""

    def __init__(
        self,
        reason: str,
        *,
        component: str,
        component_id: UUID | None = None,
        image_id: UUID | None = None,
    ) -> None:
        self.reason = reason
        self.component = component
        self.component_id = component_id
        self.image_id = image_id
        super().__init__(f"{component}: {reason}")


class DowngradeError(ImageRefusedError):
    """The image's security version is below the device's anti-rollback fuse."""

    def __init__(
        self,
        *,
        component: str,
        component_id: UUID,
        image_id: UUID,
        security_version: int,
        fuse: int,
    ) -> None:
        self.security_version = security_version
        self.fuse = fuse
        super().__init__(
            f"security version {security_version} is below the device's fuse ({fuse}): "
            "refusing a downgrade",
            component=component,
            component_id=component_id,
            image_id=image_id,
        )


class CapabilityRequiredError(DeviceError):
    """The operation needs a device capability (appDevelopment, fieldServicing) it lacks."""


class NoBootableSlotError(DeviceError):
    """Neither OS slot verified: the device cannot boot and needs recovery."""


class UpdatePendingError(DeviceError):
    """An OS update is booted but not yet confirmed; confirm it or reboot before installing."""
