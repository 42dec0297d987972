"""`sphere agent run --rot tpm`: the device agent on a Linux host whose root of trust is a TPM.

The host's firmware and Linux boot the OS, so there are no OS slots here: the agent measures
the OS it runs on (a file that identifies it, `/etc/os-release` by default) into the TPM once
per boot, then starts the app area exactly like an emulated device (`boot.boot_app_area`:
verification, trials, measurements) and runs the same `DeviceHost` schedule: attestation
with TPM quotes (`tpm_host.TpmHost`), update checks and installs for apps, error reports.

`TpmDevice` presents the TPM as the `RootOfTrust` the shared device code expects. Two parts
are weaker than on the emulated security subsystem, and say so: a TPM has no Pluton-like
manufacturing states (it reports a completed, secure device), and the apps' anti-rollback
counters live in `<folder>/tpm/counters.json`, not in TPM NV memory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.api import schemas
from opensphere.client import Client
from opensphere.device.agent import DeviceAgent
from opensphere.device.boot import BootResult, boot_app_area
from opensphere.device.errors import DeviceStateError
from opensphere.device.flash import DeviceFlash, make_durable_dir, write_atomically
from opensphere.device.keystore import TrustedKeyStore
from opensphere.device.tpm_host import TpmHost
from opensphere.formats.device_id import DeviceId
from opensphere.formats.evidence import ManufacturingState, Measurement, SecurityState
from opensphere.rot.errors import CounterRollbackError, ManufacturingStateError

OS_STAGE: Final = "os"
COUNTERS_FILE: Final = Path("tpm", "counters.json")
DEFAULT_OS_FILE: Final = Path("/etc/os-release")


class TpmDevice:
    """A TPM host as the `RootOfTrust` that boot, install and the update agent use."""

    def __init__(self, host: TpmHost) -> None:
        self.host = host
        self._counters = host.folder / COUNTERS_FILE

    @property
    def device_id(self) -> DeviceId:
        return self.host.device_id

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.host.rot.public_key()

    def sign(self, data: bytes) -> bytes:
        return self.host.rot.sign(data)

    def extend(self, stage: str, digest: bytes) -> None:
        """Measure into the TPM's PCR, once per boot: an agent restart does not re-measure."""
        if Measurement(stage, digest) not in self.host.rot.event_log():
            self.host.measure(stage, digest)

    def register(self) -> bytes:
        return self.host.rot.register()

    def event_log(self) -> tuple[Measurement, ...]:
        return self.host.rot.event_log()

    def reset_boot_measurements(self) -> None:
        """Nothing to do: only a real reboot resets the TPM's PCRs (and its log with them)."""

    @property
    def security_state(self) -> SecurityState:
        return SecurityState.SECURE

    @property
    def manufacturing_state(self) -> ManufacturingState:
        return ManufacturingState.DEVICE_COMPLETE

    def advance_manufacturing_state(self, new: ManufacturingState) -> None:
        raise ManufacturingStateError("a TPM host has no manufacturing states to advance")

    def counter(self, name: str) -> int:
        return int(self._read_counters().get(name, 0))

    def bump_counter(self, name: str, to: int) -> None:
        counters = self._read_counters()
        current = int(counters.get(name, 0))
        if to < current:
            raise CounterRollbackError(f"counter {name} is {current}; it cannot go back to {to}")
        if to > current:
            counters[name] = to
            make_durable_dir(self._counters.parent)
            write_atomically(self._counters, json.dumps(counters, sort_keys=True).encode())

    def _read_counters(self) -> dict[str, int]:
        try:
            raw = json.loads(self._counters.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise DeviceStateError(f"{self._counters} is damaged: {exc}") from exc
        if not isinstance(raw, dict):
            raise DeviceStateError(f"{self._counters} is damaged")
        return {str(k): int(v) for k, v in raw.items()}


class TpmAttestation(DeviceAgent):
    """The DeviceAgent of a TPM host: boot = measure the OS and start the app area; attest =
    a quote in the evidence envelope. Renewal and the `daa/` files are the shared ones."""

    def __init__(
        self, device: TpmDevice, *, client: Client, os_file: Path, os_version: str
    ) -> None:
        super().__init__(device.host.folder, rot=device, client=client)
        self._device = device
        self._os_file = os_file
        self._os_version = os_version

    def boot(self, *, now: dt.datetime, confirm_trial: bool = True) -> BootResult:
        flash = DeviceFlash(self._device.host.folder)
        if not flash.keystore_file.exists():
            # A host trusts no vendor key: its apps are the tenant's, signed by the service.
            flash.format(TrustedKeyStore(()))
        try:
            os_digest = hashlib.sha256(self._os_file.read_bytes()).digest()
        except OSError as exc:
            raise DeviceStateError(f"cannot measure the OS from {self._os_file}: {exc}") from exc
        self._device.extend(OS_STAGE, os_digest)
        result = boot_app_area(
            flash, self._device, now=int(now.timestamp()), os_version=self._os_version
        )
        self._boot = result
        return result

    def attest(self) -> schemas.AttestationGrant:
        return self._device.host.attest(self._client, os_version=self._os_version)


def os_version_of(os_release: Path) -> str:
    """VERSION_ID (else ID) from an os-release file, the version the operator registers."""
    fields: dict[str, str] = {}
    try:
        for line in os_release.read_text().splitlines():
            key, _, value = line.partition("=")
            fields[key.strip()] = value.strip().strip('"')
    except OSError as exc:
        raise DeviceStateError(f"cannot read {os_release}: {exc}") from exc
    version = fields.get("VERSION_ID") or fields.get("ID")
    if not version:
        raise DeviceStateError(f"{os_release} names no VERSION_ID: pass --os-version")
    return version
