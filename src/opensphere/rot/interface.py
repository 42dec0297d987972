"""The root-of-trust interface every backend implements (emulated, TPM 2.0, PKCS#11).

Kept small and hardware-shaped: a TPM offers exactly these things (a non-exportable
signing key, PCR extend/read with an event log, NV monotonic counters), so nothing here
assumes keys in files or software state.
"""

from __future__ import annotations

from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.formats.device_id import DeviceId
from opensphere.formats.evidence import ManufacturingState, Measurement, SecurityState
from opensphere.rot.errors import ManufacturingStateError

MANUFACTURING_ORDER = (
    ManufacturingState.BLANK,
    ManufacturingState.MODULE1_COMPLETE,
    ManufacturingState.DEVICE_COMPLETE,
)


class RootOfTrust(Protocol):
    """A device's hardware root of trust; the identity private key never leaves it."""

    @property
    def device_id(self) -> DeviceId:
        """Hex of the identity public key's X‖Y."""
        ...

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The identity public key (P-256)."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Raw r‖s ES256 signature over SHA-256(data) with the identity key."""
        ...

    def extend(self, stage: str, digest: bytes) -> None:
        """Measure a boot stage: register = SHA-256(register ‖ digest), and log it."""
        ...

    def register(self) -> bytes:
        """The boot-measurement register (32 bytes)."""
        ...

    def event_log(self) -> tuple[Measurement, ...]:
        """The measurements extended since the last reset, in order."""
        ...

    def reset_boot_measurements(self) -> None:
        """A reboot: the register goes back to zeros and the log is emptied."""
        ...

    @property
    def security_state(self) -> SecurityState:
        """The device's security state."""
        ...

    @property
    def manufacturing_state(self) -> ManufacturingState:
        """Where the device is in manufacturing."""
        ...

    def advance_manufacturing_state(self, new: ManufacturingState) -> None:
        """Move forward only; raise `ManufacturingStateError` when asked to go back."""
        ...

    def counter(self, name: str) -> int:
        """A monotonic counter's value; counters never set read as 0."""
        ...

    def bump_counter(self, name: str, to: int) -> None:
        """Raise a counter to `to`; raise `CounterRollbackError` if `to` is lower."""
        ...


def check_manufacturing_transition(current: ManufacturingState, new: ManufacturingState) -> None:
    """Refuse going back; staying put or skipping ahead (Blank → DeviceComplete) is allowed."""
    if MANUFACTURING_ORDER.index(new) < MANUFACTURING_ORDER.index(current):
        raise ManufacturingStateError(
            f"the manufacturing state is {current.value} and cannot go back to {new.value}; "
            "manufacturing-state changes are permanent"
        )
