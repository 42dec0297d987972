"""A Linux host with a TPM 2.0 as an OpenSphere device: claim, measure, attest.

The host's identity is its TPM's attestation key (`rot.tpm`); it speaks to the service
only through `opensphere.client`. Claiming binds the key to the TPM's certified EK by
credential activation; attesting sends a quote in the evidence envelope and stores what
comes back in `<folder>/daa/` exactly as the emulated device agent does.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from opensphere.api import schemas
from opensphere.client import Client
from opensphere.device.agent import DAA_FOLDER, store_grant
from opensphere.formats.device_id import DeviceId
from opensphere.formats.tpm_evidence import (
    TPM_EVIDENCE_CONTENT_TYPE,
    TpmEvidenceClaims,
    encode_tpm_evidence,
)
from opensphere.rot.tpm import TpmRootOfTrust, host_boot_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TpmHost:
    """One host's TPM identity, state folder and attestation; close it when done."""

    def __init__(
        self, folder: Path, *, tcti: str, boot_id: Callable[[], bytes] = host_boot_id
    ) -> None:
        self.folder = Path(folder)
        self.rot = TpmRootOfTrust.open(self.folder, tcti=tcti, boot_id=boot_id)

    def close(self) -> None:
        self.rot.close()

    def __enter__(self) -> TpmHost:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def device_id(self) -> DeviceId:
        return self.rot.device_id

    @property
    def daa(self) -> Path:
        return self.folder / DAA_FOLDER

    def claim(
        self, client: Client, tenant_id: uuid.UUID, *, device_group_id: uuid.UUID | None = None
    ) -> schemas.Device:
        """Claim this TPM device into a tenant (the client carries a Contributor's token)."""
        certificate_der, ek_public = self.rot.endorsement()
        certificate = x509.load_der_x509_certificate(certificate_der)
        challenge = client.start_tpm_activation(
            tenant_id,
            schemas.TpmActivationRequest(
                ek_certificate=certificate.public_bytes(Encoding.PEM).decode(),
                ek_public=_b64(ek_public),
                ak_public=_b64(self.rot.attestation_key.public_area),
            ),
        )
        secret = self.rot.activate_credential(
            _unb64(challenge.credential_blob), _unb64(challenge.encrypted_secret)
        )
        return client.claim_tpm_device(
            tenant_id,
            schemas.TpmClaimRequest(
                activation_id=challenge.activation_id,
                secret=_b64(secret),
                device_group_id=device_group_id,
            ),
        )

    def measure(self, name: str, digest: bytes) -> None:
        """Measure something the host runs (an image, a file) into the TPM, with its log."""
        self.rot.measure(name, digest)

    def evidence(
        self, nonce: bytes, *, os_version: str, confirmation_key: ec.EllipticCurvePublicKey | None
    ) -> bytes:
        """The evidence envelope for one challenge: a quote over it, signed by the TPM."""
        quote, signature = self.rot.quote(nonce)
        claims = TpmEvidenceClaims(
            device_id=self.device_id,
            nonce=nonce,
            event_log=self.rot.event_log(),
            os_version=os_version,
            issued_at=int(time.time()),
            quote=quote,
            quote_signature=signature,
            pcrs=self.rot.pcrs(),
            confirmation_key=confirmation_key,
        )
        return encode_tpm_evidence(claims, self.rot.sign)

    def attest(self, client: Client, *, os_version: str) -> schemas.AttestationGrant:
        """Challenge, quote, submit; store the certificate, key and credential in `daa/`."""
        challenge = client.attestation_challenge(self.device_id)
        client_key = ec.generate_private_key(ec.SECP256R1())
        evidence = self.evidence(
            _unb64(challenge.nonce),
            os_version=os_version,
            confirmation_key=client_key.public_key(),
        )
        grant = client.submit_evidence(evidence, TPM_EVIDENCE_CONTENT_TYPE)
        store_grant(self.daa, grant, client_key)
        return grant
