"""The device's capability store: one capability file, checked when applied and at every boot.

As in the original, a device holds one capability file; applying another replaces it. The
file is verified before it is written (a file for another device, or from an untrusted
signer, never lands on flash) and again at every boot, since it can expire.
"""

from __future__ import annotations

from opensphere.device.errors import CapabilityRequiredError
from opensphere.device.flash import DeviceFlash
from opensphere.device.keystore import KeyUsage, TrustedKeyStore
from opensphere.formats.capability import (
    CapabilityGrant,
    DeviceCapability,
    verify_capability_file,
)
from opensphere.formats.device_id import DeviceId
from opensphere.formats.errors import FormatError
from opensphere.formats.evidence import ManufacturingState


def verify_capability_for_device(
    data: bytes, *, keystore: TrustedKeyStore, device_id: DeviceId, now: int
) -> CapabilityGrant:
    """Raise ``CapabilityError`` unless a capability key signed ``data`` for this device."""
    return verify_capability_file(
        data, keystore.for_usage(KeyUsage.CAPABILITY), device_id=device_id, now=now
    )


def apply_capability(
    flash: DeviceFlash, data: bytes, *, keystore: TrustedKeyStore, device_id: DeviceId, now: int
) -> CapabilityGrant:
    """Verify, then store durably; a refused file leaves the current one in place."""
    grant = verify_capability_for_device(data, keystore=keystore, device_id=device_id, now=now)
    flash.write_capability_file(data)
    return grant


def current_capabilities(
    flash: DeviceFlash, *, keystore: TrustedKeyStore, device_id: DeviceId, now: int
) -> CapabilityGrant | None:
    """The stored grant if it still verifies; none, expired or damaged grants nothing."""
    data = flash.read_capability_file()
    if data is None:
        return None
    try:
        return verify_capability_for_device(data, keystore=keystore, device_id=device_id, now=now)
    except FormatError:
        return None


def check_servicing_allowed(
    grant: CapabilityGrant | None,
    manufacturing_state: ManufacturingState,
    *,
    test_signed: bool,
) -> None:
    """Sideloading and inspecting a device: who may do it (reference §2.6, §3.6).

    Test-signed images always need appDevelopment. Otherwise a device still in manufacturing
    is open to servicing, and a finalised (DeviceComplete) one needs appDevelopment or
    fieldServicing: "a user can get the ID of a device, but nothing more".
    """
    granted = grant.capabilities if grant is not None else frozenset()
    if test_signed and DeviceCapability.APP_DEVELOPMENT not in granted:
        raise CapabilityRequiredError(
            "test-signed images need the appDevelopment capability on this device"
        )
    if manufacturing_state is ManufacturingState.DEVICE_COMPLETE and not granted & {
        DeviceCapability.APP_DEVELOPMENT,
        DeviceCapability.FIELD_SERVICING,
    }:
        raise CapabilityRequiredError(
            "this device is finalised (DeviceComplete): servicing it needs the "
            "appDevelopment or fieldServicing capability"
        )
