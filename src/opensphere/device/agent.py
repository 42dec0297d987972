"""Device agent, first part: boot the measured chain, attest, keep the certificate fresh.

It speaks to the service only through `opensphere.client` and never imports the service.
The boot here measures stand-in images (fixed bytes per stage) until the device OS boots
real ones; `stand_in_reference()` gives the operator the matching reference values.

What attestation leaves in `<device folder>/daa/` (written atomically, secrets 0600):

- `client.key`: the TLS client key the certificate certifies. It is made on the device
  and its public half travels in the evidence's `cnf` claim, signed by the identity key:
  the identity key itself never leaves the root of trust, so it cannot sit in a TLS stack.
- `certificate.pem` (24 h, CN = device ID) and `chain.pem` (tenant CA, service root).
- `credential`: the token for the other device endpoints; `state.json`: the expiry times.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.api import schemas
from opensphere.client import Client
from opensphere.formats.evidence import EvidenceClaims, Measurement, encode_evidence
from opensphere.rot import RootOfTrust

DAA_FOLDER = "daa"
CLIENT_KEY_FILE = "client.key"
CERTIFICATE_FILE = "certificate.pem"
CHAIN_FILE = "chain.pem"
CREDENTIAL_FILE = "credential"
STATE_FILE = "state.json"
RENEW_MARGIN = dt.timedelta(hours=4)
STAND_IN_OS_VERSION = "0.1-standin"
STAND_IN_STAGES = ("bootloader", "security-monitor", "os")
STAND_IN_SECURITY_VERSION = 1

# The device certificate's CN is the 128-character device ID (see the service's CA core).
warnings.filterwarnings(
    "ignore", message="Attribute's length must be >= 1 and <= 64", category=UserWarning
)


def stand_in_image(stage: str) -> bytes:
    return f"OpenSphere stand-in {stage} image, OS {STAND_IN_OS_VERSION}\n".encode()


def stand_in_reference() -> schemas.OsReleaseCreate:
    """The reference values an operator registers so that stand-in boots pass appraisal."""
    return schemas.OsReleaseCreate(
        version=STAND_IN_OS_VERSION,
        description="stand-in images of the emulated device agent",
        measurements=[
            schemas.ReferenceMeasurement(
                stage=stage, digest=hashlib.sha256(stand_in_image(stage)).hexdigest()
            )
            for stage in STAND_IN_STAGES
        ],
    )


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

    def boot(self) -> tuple[Measurement, ...]:
        """A reboot with stand-in images: reset the register, measure each stage, raise fuses."""
        self._rot.reset_boot_measurements()
        for stage in STAND_IN_STAGES:
            self._rot.extend(stage, hashlib.sha256(stand_in_image(stage)).digest())
        self._rot.bump_counter("os", STAND_IN_SECURITY_VERSION)
        return self._rot.event_log()

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
        """Challenge, sign evidence over the current measurements, store what comes back."""
        if not self._rot.event_log():
            self.boot()
        challenge = self._client.attestation_challenge(self._rot.device_id)
        nonce = base64.urlsafe_b64decode(challenge.nonce + "=" * (-len(challenge.nonce) % 4))
        client_key = ec.generate_private_key(ec.SECP256R1())
        claims = EvidenceClaims(
            device_id=self._rot.device_id,
            nonce=nonce,
            measurements=self._rot.event_log(),
            boot_register=self._rot.register(),
            os_version=STAND_IN_OS_VERSION,
            security_state=self._rot.security_state,
            manufacturing_state=self._rot.manufacturing_state,
            security_versions={"os": self._rot.counter("os")},
            issued_at=int(time.time()),
            confirmation_key=client_key.public_key(),
        )
        grant = self._client.submit_evidence(encode_evidence(claims, self._rot.sign))
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
        """Key first, state last: a crash in between leaves a state that asks to renew."""
        self._daa.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_pem = client_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_atomically(self._daa / STATE_FILE, b"{}")
        _write_atomically(self.client_key_path, key_pem)
        _write_atomically(self.certificate_path, grant.certificate.encode())
        _write_atomically(self.chain_path, "".join(grant.chain).encode())
        _write_atomically(self._daa / CREDENTIAL_FILE, grant.credential.encode())
        state = {
            "certificate_expires_at": grant.certificate_expires_at.isoformat(),
            "credential_expires_at": grant.credential_expires_at.isoformat(),
        }
        _write_atomically(self._daa / STATE_FILE, json.dumps(state).encode())


def _write_atomically(path: Path, data: bytes) -> None:
    """Temp file (0600), fsync, rename: readers see the old file or the new one."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
