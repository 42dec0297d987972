"""TpmRootOfTrust: the root of trust of a Linux device with a TPM 2.0, through tpm2-pytss.

The identity key is the attestation key (AK), a primary key in the endorsement hierarchy
made from the template `formats.tpm.attestation_key_template` with a salt kept in
`<folder>/tpm/ak.salt`: the TPM derives it from its endorsement seed and the template, so
it is the same key at every start, made inside the TPM, and it never leaves it (only the
public salt is stored outside). The device ID is its X‖Y.
The endorsement key (EK) is re-created from the TCG template and the certificate the
manufacturer left in NV (TCG EK Credential Profile, RSA 2048 low range).

Measurements are extended into `MEASUREMENT_PCR` (SHA-256 bank) and logged in
`<folder>/tpm/eventlog.json`. The PCR only resets when the TPM does, so the log is tied
to the TPM's reset counter: when the counter moved (a reboot), the old log is dropped
and the first event of the new one, `boot`, measures the host's boot ID, so that the
service can tell a reboot from a TPM reset behind the running OS's back.

The TPM offers no Pluton-like manufacturing or security states, so this backend is not a
drop-in `RootOfTrust` for the emulated boot chain: it offers identity, signing,
measurement and quotes, which is what a Linux host's agent needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from cryptography.hazmat.primitives.asymmetric import ec
from tpm2_pytss import ESAPI
from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_SE
from tpm2_pytss.TSS2_Exception import TSS2_Exception
from tpm2_pytss.types import (
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPML_DIGEST_VALUES,
    TPMS_CLOCK_INFO,
    TPMT_HA,
    TPMT_SIG_SCHEME,
    TPMT_SYM_DEF,
    TPMU_HA,
)
from tpm2_pytss.utils import NoSuchIndex, create_ek_template

from opensphere.formats.device_id import DeviceId
from opensphere.formats.evidence import Measurement
from opensphere.formats.tpm import (
    BOOT_EVENT,
    MEASUREMENT_PCR,
    PCR_BANK,
    AttestationKey,
    attestation_key_template,
    parse_attestation_key,
)
from opensphere.rot.errors import RootOfTrustError

TPM_DIRECTORY = "tpm"
EVENT_LOG_FILE = "eventlog.json"
SALT_FILE = "ak.salt"
EK_TYPE = "EK-RSA2048"
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
_NV_CHUNK = 512
_SEQUENCE_CHUNK = 1024
_TPM_RC_HANDLE = 0x8B
_TPM_RC_FMT1 = 0x80
_MEASUREMENT_PCR_HANDLE = ESYS_TR.PCR0 + MEASUREMENT_PCR


class TpmError(RootOfTrustError):
    """The TPM refused an operation or cannot be reached; the message says which."""


def host_boot_id() -> bytes:
    """Linux's random ID of this boot: it changes at every reboot and only then."""
    return BOOT_ID_PATH.read_bytes().strip()


def _salt(directory: Path) -> bytes:
    """The AK template's salt: made once per state folder, with O_EXCL, never rewritten."""
    path = directory / SALT_FILE
    with contextlib.suppress(FileExistsError):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_bytes(32))
            file.flush()
            os.fsync(file.fileno())
    salt = path.read_bytes()
    if len(salt) != 32:
        raise TpmError(f"{path} is damaged: the device identity cannot be re-created")
    return salt


class TpmRootOfTrust:
    """A device's TPM: open with `open(folder, tcti=…)`, close (or use as a context manager)."""

    def __init__(
        self,
        *,
        esapi: ESAPI,
        directory: Path,
        ak_handle: ESYS_TR,
        ak: AttestationKey,
        boot_id: Callable[[], bytes],
    ) -> None:
        self._esapi = esapi
        self._directory = directory
        self._ak_handle = ak_handle
        self._ak = ak
        self._boot_id = boot_id
        self._log: list[Measurement] = []
        self._resume_log()

    @classmethod
    def open(
        cls, folder: Path, *, tcti: str, boot_id: Callable[[], bytes] = host_boot_id
    ) -> TpmRootOfTrust:
        """Connect to the TPM (`tcti`, e.g. `device:/dev/tpmrm0` or `swtpm:port=2321`)."""
        directory = Path(folder) / TPM_DIRECTORY
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            esapi = ESAPI(tcti)
        except TSS2_Exception as exc:
            raise TpmError(f"cannot reach the TPM through {tcti!r}: {exc}") from exc
        try:
            handle, public, *_ = esapi.create_primary(
                None, attestation_key_template(_salt(directory)), ESYS_TR.ENDORSEMENT
            )
            ak = parse_attestation_key(public.marshal())
            return cls(esapi=esapi, directory=directory, ak_handle=handle, ak=ak, boot_id=boot_id)
        except (TSS2_Exception, RootOfTrustError, ValueError) as exc:
            esapi.close()
            raise TpmError(f"the TPM cannot create the attestation key: {exc}") from exc

    def close(self) -> None:
        self._esapi.flush_context(self._ak_handle)
        self._esapi.close()

    def __enter__(self) -> TpmRootOfTrust:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- identity --------------------------------------------------------------------

    @property
    def device_id(self) -> DeviceId:
        return self._ak.device_id

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._ak.public_key

    @property
    def attestation_key(self) -> AttestationKey:
        """The AK's TPM public area and name, for credential activation."""
        return self._ak

    def sign(self, data: bytes) -> bytes:
        """Raw r‖s ES256 over SHA-256(data): the TPM hashes `data` and signs with a ticket.

        The AK is restricted, so it signs a digest only with the ticket TPM2_Hash gives,
        and the TPM refuses that ticket for data starting with TPM_GENERATED_VALUE: this
        cannot be used to forge a quote.
        """
        try:
            sequence = self._esapi.hash_sequence_start(b"", TPM2_ALG.SHA256)
            body, last = data[:-1] if data else b"", data[-1:]
            for start in range(0, len(body), _SEQUENCE_CHUNK):
                self._esapi.sequence_update(sequence, body[start : start + _SEQUENCE_CHUNK])
            digest, ticket = self._esapi.sequence_complete(sequence, last, ESYS_TR.OWNER)
            signature = self._esapi.sign(
                self._ak_handle, digest, TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL), ticket
            )
        except TSS2_Exception as exc:
            raise TpmError(f"the TPM refused to sign: {exc}") from exc
        r, s = (
            bytes(signature.signature.ecdsa.signatureR),
            bytes(signature.signature.ecdsa.signatureS),
        )
        return r.rjust(32, b"\0") + s.rjust(32, b"\0")

    # --- endorsement and credential activation ---------------------------------------

    def endorsement(self) -> tuple[bytes, bytes]:
        """(EK certificate DER, EK public area TPM2B_PUBLIC) as the manufacturer made them."""
        try:
            certificate, template = create_ek_template(EK_TYPE, self._nv_read)
            handle, public, *_ = self._esapi.create_primary(None, template, ESYS_TR.ENDORSEMENT)
            self._esapi.flush_context(handle)
        except (TSS2_Exception, ValueError) as exc:
            raise TpmError(f"the TPM has no usable {EK_TYPE} endorsement key: {exc}") from exc
        if certificate is None:
            raise TpmError("the TPM holds no EK certificate; it cannot prove it is genuine")
        return bytes(certificate), bytes(public.marshal())

    def activate_credential(self, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        """TPM2_ActivateCredential: recover the secret the service sealed to (EK, AK name)."""
        try:
            _, template = create_ek_template(EK_TYPE, self._nv_read)
            ek, *_ = self._esapi.create_primary(None, template, ESYS_TR.ENDORSEMENT)
            session = self._esapi.start_auth_session(
                ESYS_TR.NONE,
                ESYS_TR.NONE,
                TPM2_SE.POLICY,
                TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
                TPM2_ALG.SHA256,
            )
            try:
                # The EK's policy: PolicySecret(TPM_RH_ENDORSEMENT) (TCG EK profile).
                self._esapi.policy_secret(ESYS_TR.ENDORSEMENT, session)
                secret = self._esapi.activate_credential(
                    self._ak_handle,
                    ek,
                    TPM2B_ID_OBJECT(credential=credential_blob),
                    TPM2B_ENCRYPTED_SECRET(secret=encrypted_secret),
                    session1=ESYS_TR.PASSWORD,
                    session2=session,
                )
            finally:
                self._esapi.flush_context(session)
                self._esapi.flush_context(ek)
        except (TSS2_Exception, ValueError) as exc:
            raise TpmError(f"the TPM could not activate the credential: {exc}") from exc
        return bytes(secret)

    # --- measurements and quotes -----------------------------------------------------

    def measure(self, name: str, digest: bytes) -> None:
        """Extend `digest` (SHA-256) into the measurement PCR and log it under `name`.

        The log is written first: a crash before the extend leaves a log that does not
        replay, which the service refuses (fail closed) until the next reboot.
        """
        measurement = Measurement(stage=name, digest=digest)
        self._log.append(measurement)
        self._save_log()
        try:
            self._esapi.pcr_extend(
                _MEASUREMENT_PCR_HANDLE,
                TPML_DIGEST_VALUES(
                    [TPMT_HA(hashAlg=TPM2_ALG.SHA256, digest=TPMU_HA(sha256=digest))]
                ),
            )
        except TSS2_Exception as exc:
            self._log.pop()
            self._save_log()
            raise TpmError(f"the TPM refused to extend PCR {MEASUREMENT_PCR}: {exc}") from exc

    def event_log(self) -> tuple[Measurement, ...]:
        return tuple(self._log)

    def register(self) -> bytes:
        """The measurement PCR's current value."""
        return self.pcrs()[MEASUREMENT_PCR]

    def pcrs(self) -> dict[int, bytes]:
        try:
            _, _, digests = self._esapi.pcr_read(f"{PCR_BANK}:{MEASUREMENT_PCR}")
        except TSS2_Exception as exc:
            raise TpmError(f"cannot read PCR {MEASUREMENT_PCR}: {exc}") from exc
        return {MEASUREMENT_PCR: bytes(digests[0])}

    def quote(
        self, nonce: bytes, *, selection: str = f"{PCR_BANK}:{MEASUREMENT_PCR}"
    ) -> tuple[bytes, bytes]:
        """(TPMS_ATTEST, TPMT_SIGNATURE) over `selection` with `nonce` as qualifying data.

        The default is the service's policy; another selection (tpm2-tools syntax, e.g.
        `sha256:0,7,15`) is quoted as asked, and the service refuses it.
        """
        try:
            attest, signature = self._esapi.quote(self._ak_handle, selection, nonce)
        except TSS2_Exception as exc:
            raise TpmError(f"the TPM refused to quote: {exc}") from exc
        return bytes(attest), bytes(signature.marshal())

    def clock(self) -> TPMS_CLOCK_INFO:
        try:
            return self._esapi.read_clock().clockInfo
        except TSS2_Exception as exc:
            raise TpmError(f"cannot read the TPM clock: {exc}") from exc

    # --- internals -------------------------------------------------------------------

    def _nv_read(self, index: int) -> bytes:
        """Read a whole NV index; `NoSuchIndex` when it is not defined (create_ek_template)."""
        try:
            handle = self._esapi.tr_from_tpmpublic(index)
        except TSS2_Exception as exc:
            if exc.rc & (_TPM_RC_FMT1 | 0x3F) == _TPM_RC_HANDLE:
                raise NoSuchIndex(index) from exc
            raise
        public, _ = self._esapi.nv_read_public(handle)
        size = public.nvPublic.dataSize
        data = b""
        while len(data) < size:
            chunk = self._esapi.nv_read(
                handle, min(_NV_CHUNK, size - len(data)), len(data), auth_handle=ESYS_TR.RH_OWNER
            )
            data += bytes(chunk)
        return data

    def _resume_log(self) -> None:
        """Keep this boot's log; start a new one (with the boot event) after a TPM reset."""
        reset_count = int(self.clock().resetCount)
        path = self._directory / EVENT_LOG_FILE
        try:
            saved = json.loads(path.read_text())
            if saved["reset_count"] == reset_count:
                self._log = [
                    Measurement(stage=name, digest=bytes.fromhex(digest))
                    for name, digest in saved["events"]
                ]
                return
        except (OSError, ValueError, KeyError, TypeError):
            pass
        self._log = []
        self._save_log()
        self.measure(BOOT_EVENT, hashlib.sha256(self._boot_id()).digest())

    def _save_log(self) -> None:
        reset_count = int(self.clock().resetCount)
        body = json.dumps(
            {
                "reset_count": reset_count,
                "events": [[m.stage, m.digest.hex()] for m in self._log],
            }
        ).encode()
        path = self._directory / EVENT_LOG_FILE
        temporary = path.with_suffix(".tmp")
        with temporary.open("wb") as file:
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
