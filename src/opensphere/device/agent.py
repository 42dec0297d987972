"""Device agent, first part: boot the measured chain, attest, keep the certificate fresh.

It speaks to the service only through `opensphere.client` and never imports the service.
`boot()` is one power-on of the device's real secure boot (`boot_device`); the evidence
carries that boot's measurement log, the OS version of the slot that booted, and the
anti-rollback fuse of each boot stage, keyed by stage name (`bootloader`, `security-monitor`,
`os`: the component names the operator's minimum security versions use). The operator
registers the matching reference values (`Fleet.reference_values`, `sphere os-release`).

What attestation leaves in `<device folder>/daa/` (written atomically, secrets 0600):

- `client.key`: the TLS client key the certificate certifies. It is made on the device
  and its public half travels in the evidence's `cnf` claim, signed by the identity key:
  the identity key itself never leaves the root of trust, so it cannot sit in a TLS stack.
- `certificate.pem` (24 h, CN = device ID) and `chain.pem` (tenant CA, service root).
- `credential`: the token for the other device endpoints; `state.json`: the expiry times.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.api import schemas
from opensphere.client import Client
from opensphere.device.boot import BootResult, boot_device, confirm_boot
from opensphere.device.errors import DeviceStateError
from opensphere.device.flash import DeviceFlash, write_atomically
from opensphere.device.policy import BOOT_STAGES, fuse_name
from opensphere.formats.evidence import EvidenceClaims, encode_evidence
from opensphere.rot import RootOfTrust

DAA_FOLDER = "daa"
CLIENT_KEY_FILE = "client.key"
CERTIFICATE_FILE = "certificate.pem"
CHAIN_FILE = "chain.pem"
CREDENTIAL_FILE = "credential"
STATE_FILE = "state.json"
RENEW_MARGIN = dt.timedelta(hours=4)

# The device certificate's CN is the 128-character device ID (see the service's CA core).
warnings.filterwarnings(
    "ignore", message="Attribute's length must be >= 1 and <= 64", category=UserWarning
)


def boot_evidence(
    rot: RootOfTrust,
    boot: BootResult,
    *,
    nonce: bytes,
    issued_at: int,
    confirmation_key: ec.EllipticCurvePublicKey | None,
) -> bytes:
    """Evidence about the boot that `rot` just measured, signed inside the root of trust."""
    claims = EvidenceClaims(
        device_id=rot.device_id,
        nonce=nonce,
        measurements=rot.event_log(),
        boot_register=rot.register(),
        os_version=boot.os_version,
        security_state=rot.security_state,
        manufacturing_state=rot.manufacturing_state,
        security_versions={
            stage.name: rot.counter(fuse_name(stage.component_id)) for stage in BOOT_STAGES
        },
        issued_at=issued_at,
        confirmation_key=confirmation_key,
    )
    return encode_evidence(claims, rot.sign)


@dataclass(frozen=True, slots=True)
class AgentState:
    certificate_expires_at: dt.datetime
    credential_expires_at: dt.datetime


class DeviceAgent:
    """Attests one device folder's root of trust to one service."""

    def __init__(self, folder: Path, *, rot: RootOfTrust, client: Client) -> None:
        self._folder = Path(folder)
        self._daa = self._folder / DAA_FOLDER
        self._rot = rot
        self._client = client
        self._boot: BootResult | None = None

    @property
    def certificate_path(self) -> Path:
        return self._daa / CERTIFICATE_FILE

    @property
    def client_key_path(self) -> Path:
        return self._daa / CLIENT_KEY_FILE

    @property
    def chain_path(self) -> Path:
        return self._daa / CHAIN_FILE

    @property
    def credential(self) -> str:
        return (self._daa / CREDENTIAL_FILE).read_text().strip()

    def boot(self, *, now: dt.datetime, confirm_trial: bool = True) -> BootResult:
        """Power on: secure boot of the device's flash.

        `boot_device` commits a normal boot itself. A release booted on trial verified and
        measured like any other; a device without an update agent (`confirm_trial`) confirms it
        here, before any evidence is signed: the fuses it raises are what the evidence reports,
        and an unconfirmed trial would report the old ones and could never pass a minimum
        raised for the new release. The update agent confirms only after its health check.
        """
        flash = DeviceFlash(self._folder)
        if not flash.keystore_file.exists():
            raise DeviceStateError(
                f"{self._folder} has an identity but no flash (key store, OS slots), so it "
                "cannot boot: make bootable devices with 'sphere device manufacture' or "
                "'sphere device-emulator create'"
            )
        result = boot_device(flash, self._rot, now=int(now.timestamp()))
        if result.trial and confirm_trial:
            confirm_boot(flash, self._rot, result)
        self._boot = result
        return result

    def state(self) -> AgentState | None:
        try:
            raw = json.loads((self._daa / STATE_FILE).read_text())
            return AgentState(
                certificate_expires_at=dt.datetime.fromisoformat(raw["certificate_expires_at"]),
                credential_expires_at=dt.datetime.fromisoformat(raw["credential_expires_at"]),
            )
        except (OSError, ValueError, KeyError):
            return None

    def attest(self) -> schemas.AttestationGrant:
        """Challenge, sign evidence about this power-on's boot, store what comes back."""
        boot = self._boot or self.boot(now=dt.datetime.now(dt.UTC))
        challenge = self._client.attestation_challenge(self._rot.device_id)
        nonce = base64.urlsafe_b64decode(challenge.nonce + "=" * (-len(challenge.nonce) % 4))
        client_key = ec.generate_private_key(ec.SECP256R1())
        evidence = boot_evidence(
            self._rot,
            boot,
            nonce=nonce,
            issued_at=int(time.time()),
            confirmation_key=client_key.public_key(),
        )
        grant = self._client.submit_evidence(evidence)
        self._store(grant, client_key)
        return grant

    def renew_if_due(
        self, *, now: dt.datetime, margin: dt.timedelta = RENEW_MARGIN
    ) -> schemas.AttestationGrant | None:
        """Attest again when the certificate is missing or ends within `margin`."""
        state = self.state()
        if state is not None and state.certificate_expires_at - margin > now:
            return None
        return self.attest()

    def _store(
        self, grant: schemas.AttestationGrant, client_key: ec.EllipticCurvePrivateKey
    ) -> None:
        store_grant(self._daa, grant, client_key)


def store_grant(
    daa: Path, grant: schemas.AttestationGrant, client_key: ec.EllipticCurvePrivateKey
) -> None:
    """Key first, state last: a crash in between leaves a state that asks to renew.

    Shared by every root of trust's agent (emulated, TPM), so `daa/` always looks alike.
    """
    daa.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_pem = client_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomically(daa / STATE_FILE, b"{}")
    write_atomically(daa / CLIENT_KEY_FILE, key_pem)
    write_atomically(daa / CERTIFICATE_FILE, grant.certificate.encode())
    write_atomically(daa / CHAIN_FILE, "".join(grant.chain).encode())
    write_atomically(daa / CREDENTIAL_FILE, grant.credential.encode())
    state = {
        "certificate_expires_at": grant.certificate_expires_at.isoformat(),
        "credential_expires_at": grant.credential_expires_at.isoformat(),
    }
    write_atomically(daa / STATE_FILE, json.dumps(state).encode())
