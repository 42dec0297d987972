"""Manufacturing: a manufacturer CA certifies each device's identity key (IEEE 802.1AR IDevID).

The service trusts a configured set of manufacturer CAs; a device whose IDevID chains to
one of them is genuine. The CA key signs device certificates only: it never sees a
device's private key, which stays in the device's root of trust.

IDevID profile: subject serialNumber = device ID (128 hex characters; X.520 caps a common
name at 64 characters, so the ID cannot be the CN), the identity public key, keyUsage
digitalSignature, extendedKeyUsage clientAuth (the device proves its identity as a
client), and notAfter 9999-12-31T23:59:59Z: 802.1AR's "no well-defined expiration", since
the identity lives as long as the silicon.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from opensphere.formats.device_id import DeviceId, device_id_from_public_key, parse_device_id
from opensphere.formats.errors import FormatError
from opensphere.formats.evidence import ManufacturingState
from opensphere.rot.software import EmulatedRootOfTrust

IDEVID_FILE = "idevid.pem"
IDEVID_NOT_AFTER = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


class ManufacturingError(Exception):
    """Manufacturing could not be done, or a manufacturer credential cannot be trusted."""


class NotGenuineError(ManufacturingError):
    """An IDevID does not prove a genuine device: untrusted issuer, expired CA or wrong key."""


def create_manufacturer_ca(
    common_name: str, *, now: dt.datetime, validity_days: int
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed P-256 CA that may sign device certificates but no further CAs."""
    _check_aware(now)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def issue_idevid(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    device_public_key: ec.EllipticCurvePublicKey,
    device_id: DeviceId,
    *,
    now: dt.datetime,
) -> x509.Certificate:
    """Certify a device identity key; refuse if the ID is not that key's ID."""
    _check_aware(now)
    if device_id_from_public_key(device_public_key) != parse_device_id(device_id):
        raise ManufacturingError("the device ID is not the ID of the device public key")
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, device_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(device_public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(IDEVID_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(device_public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def verify_idevid(
    certificate: x509.Certificate, trusted_cas: list[x509.Certificate], *, now: dt.datetime
) -> DeviceId:
    """Return the device ID an IDevID proves, or raise `NotGenuineError` (see `IdevidVerifier`)."""
    return IdevidVerifier(trusted_cas, now=now).verify(certificate)


class IdevidVerifier:
    """Checks IDevIDs against the trusted manufacturer CAs at one moment.

    Path validation is cryptography's (RFC 5280 with its web-PKI profile, client role),
    relaxed in one point: an IDevID names its device in the subject, so subjectAltName is
    optional. On top of it the certified key must be the key the device ID names, so a CA
    mistake cannot bind one device's ID to another device's key. Building the validator
    costs more than using it (about 1 ms against 0.4 ms), so a batch builds it once.
    """

    def __init__(self, trusted_cas: list[x509.Certificate], *, now: dt.datetime) -> None:
        _check_aware(now)
        self._now = now
        self._verifier: ClientVerifier | None = None
        if trusted_cas:
            ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
                x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
            )
            self._verifier = (
                PolicyBuilder()
                .store(Store(trusted_cas))
                .time(now)
                .extension_policies(
                    ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy
                )
                .build_client_verifier()
            )

    def verify(self, certificate: x509.Certificate) -> DeviceId:
        """Return the device ID the IDevID proves, or raise `NotGenuineError`."""
        if self._verifier is None:
            raise NotGenuineError("no manufacturer CA is trusted; configure at least one")
        try:
            self._verifier.verify(certificate, [])
        except VerificationError as exc:
            raise NotGenuineError(
                "the IDevID does not chain to a trusted manufacturer CA at "
                f"{self._now:%Y-%m-%d}: {exc}"
            ) from exc
        serials = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
        if len(serials) != 1 or not isinstance(serials[0].value, str):
            raise NotGenuineError(
                "the IDevID subject must hold exactly one serialNumber (device ID)"
            )
        try:
            device_id = parse_device_id(serials[0].value)
            public_key = certificate.public_key()
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise NotGenuineError("the IDevID does not certify an ECDSA P-256 key")
            key_id = device_id_from_public_key(public_key)
        except FormatError as exc:
            raise NotGenuineError(f"the IDevID does not name a valid device: {exc}") from exc
        if key_id != device_id:
            raise NotGenuineError("the IDevID certifies a key that is not the key of its device ID")
        return device_id


def manufacture_device(
    folder: Path,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    now: dt.datetime,
) -> DeviceId:
    """Create the root of trust, write `idevid.pem`, then finalise to DeviceComplete.

    The state is advanced last, so a device that failed half-way is visibly unfinished.
    """
    rot = EmulatedRootOfTrust.manufacture(folder)
    certificate = issue_idevid(ca_key, ca_cert, rot.public_key(), rot.device_id, now=now)
    _write_new(Path(folder) / IDEVID_FILE, certificate.public_bytes(serialization.Encoding.PEM))
    rot.advance_manufacturing_state(ManufacturingState.DEVICE_COMPLETE)
    return rot.device_id


def load_idevid(folder: Path) -> x509.Certificate:
    """Read a device folder's IDevID, for the device agent to present."""
    return x509.load_pem_x509_certificate((Path(folder) / IDEVID_FILE).read_bytes())


def save_manufacturer_ca(
    key: ec.EllipticCurvePrivateKey,
    certificate: x509.Certificate,
    *,
    key_path: Path,
    cert_path: Path,
    password: bytes | None = None,
) -> None:
    """Write the CA as PEM; the key file is created 0600 and never overwritten."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    _write_new(Path(key_path), key_pem)
    _write_new(Path(cert_path), certificate.public_bytes(serialization.Encoding.PEM))


def load_manufacturer_ca(
    *, key_path: Path, cert_path: Path, password: bytes | None = None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Read a CA saved by `save_manufacturer_ca`; refuse a key others can read."""
    key_path = Path(key_path)
    try:
        mode = stat.S_IMODE(key_path.stat().st_mode)
        if mode & 0o077:
            raise ManufacturingError(
                f"{key_path} has mode {mode:04o}; a CA key must be private: chmod 600 {key_path}"
            )
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=password)
        certificate = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise ManufacturingError(f"cannot load the manufacturer CA: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != (
        certificate.public_key()
    ):
        raise ManufacturingError(f"{key_path} is not the private key of {cert_path}")
    return key, certificate


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _check_aware(now: dt.datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("`now` must be timezone-aware (UTC)")


def _write_new(path: Path, data: bytes) -> None:
    """Create a file that must not exist yet, mode 0600, durably."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ManufacturingError(f"{path} already exists; refusing to overwrite it") from exc
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
