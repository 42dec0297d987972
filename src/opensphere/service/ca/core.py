"""The certificate rules, with no I/O: validity, rotation plan, statuses, certificate profiles.

Tenant CAs follow Azure Sphere (reference §4.2): two years of validity; a successor is
created about 90 days before the current CA expires and becomes Active 45 days after
its creation; until the older one expires both are trusted, so relying parties can add
the successor before any device certificate is issued by it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from opensphere.api.schemas import CaCertificateStatus
from opensphere.formats.device_id import DeviceId

ROOT_VALIDITY = dt.timedelta(days=20 * 365)
TENANT_CA_VALIDITY = dt.timedelta(days=730)
SUCCESSOR_LEAD = dt.timedelta(days=90)
ACTIVATION_DELAY = dt.timedelta(days=45)
DEVICE_CERTIFICATE_VALIDITY = dt.timedelta(hours=24)
PROOF_VALIDITY = dt.timedelta(days=30)
ORGANIZATION = "OpenSphere"

# A device certificate's CN is the 128-character device ID, as on Azure Sphere, so that
# brokers reading the CN (Mosquitto's use_identity_as_username) see the device ID. X.520
# caps a CN at 64 characters; cryptography warns when building a longer one (we build it
# on purpose) and TLS stacks read it as is.
warnings.filterwarnings(
    "ignore", message="Attribute's length must be >= 1 and <= 64", category=UserWarning
)


@dataclass(frozen=True, slots=True)
class CaRecord:
    """What the rules need to know of one tenant CA generation."""

    generation: int
    not_before: dt.datetime
    not_after: dt.datetime
    active_from: dt.datetime
    revoked_at: dt.datetime | None = None

    def trusted_at(self, now: dt.datetime) -> bool:
        """Not revoked and inside its validity: relying parties should accept it."""
        return self.revoked_at is None and self.not_before <= now < self.not_after


@dataclass(frozen=True, slots=True)
class PlannedCa:
    generation: int
    not_before: dt.datetime
    not_after: dt.datetime
    active_from: dt.datetime


@dataclass(frozen=True, slots=True)
class IssuingCa:
    """A CA ready to sign: its key, certificate and the parts every issued certificate copies."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    authority_key_id: x509.AuthorityKeyIdentifier
    pem: str

    @classmethod
    def of(cls, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> IssuingCa:
        ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return cls(
            key=key,
            certificate=certificate,
            authority_key_id=x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
            pem=to_pem(certificate),
        )


def active_ca(cas: Sequence[CaRecord], now: dt.datetime) -> CaRecord | None:
    """The CA that signs device certificates now: the newest trusted one already active."""
    candidates = [ca for ca in cas if ca.trusted_at(now) and ca.active_from <= now]
    return max(candidates, key=lambda ca: ca.generation, default=None)


def ca_status(ca: CaRecord, cas: Sequence[CaRecord], now: dt.datetime) -> CaCertificateStatus:
    if ca.revoked_at is not None:
        return CaCertificateStatus.REVOKED
    if now >= ca.not_after:
        return CaCertificateStatus.EXPIRED
    active = active_ca(cas, now)
    if active is not None and active.generation == ca.generation:
        return CaCertificateStatus.ACTIVE
    return CaCertificateStatus.INACTIVE


def plan_rotation(cas: Sequence[CaRecord], now: dt.datetime) -> PlannedCa | None:
    """The CA to create now, if any.

    With no active CA (a new tenant, or the active one expired or was revoked) the new CA
    is active at once; when the newest CA is within `SUCCESSOR_LEAD` of its expiry, a
    successor is created that becomes active `ACTIVATION_DELAY` later.
    """
    generation = max((ca.generation for ca in cas), default=0) + 1
    if active_ca(cas, now) is None:
        return PlannedCa(generation, now, now + TENANT_CA_VALIDITY, now)
    newest = max((ca for ca in cas if ca.trusted_at(now)), key=lambda ca: ca.generation)
    if now >= newest.not_after - SUCCESSOR_LEAD:
        return PlannedCa(generation, now, now + TENANT_CA_VALIDITY, now + ACTIVATION_DELAY)
    return None


def next_change(cas: Sequence[CaRecord], now: dt.datetime) -> dt.datetime | None:
    """The next moment the active CA or the rotation plan can change by time alone."""
    moments = [m for ca in cas for m in (ca.active_from, ca.not_after) if m > now]
    trusted = [ca for ca in cas if ca.trusted_at(now)]
    if trusted:
        newest = max(trusted, key=lambda ca: ca.generation)
        moments.append(newest.not_after - SUCCESSOR_LEAD)
    later = [m for m in moments if m > now]
    return min(later, default=None)


def build_root_ca(key: ec.EllipticCurvePrivateKey, *, now: dt.datetime) -> x509.Certificate:
    """The self-signed service root: it signs tenant CAs only (path length 1)."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, "OpenSphere Service Root CA"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + ROOT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )


def build_tenant_ca(
    public_key: ec.EllipticCurvePublicKey,
    *,
    root: IssuingCa,
    tenant_id: uuid.UUID,
    plan: PlannedCa,
) -> x509.Certificate:
    """A tenant CA generation, signed by the root; it signs device certificates only."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"OpenSphere tenant {tenant_id} CA {plan.generation}"
            ),
        ]
    )
    not_after = min(plan.not_after, root.certificate.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(root.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(plan.not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(root.authority_key_id, critical=False)
        .sign(root.key, hashes.SHA256())
    )


def build_tenant_anchor(
    key: ec.EllipticCurvePrivateKey, chained: x509.Certificate
) -> x509.Certificate:
    """The self-signed twin of a tenant CA: same name, key and validity, no link to the root.

    TLS stacks without partial-chain validation (OpenSSL by default, hence Mosquitto) take
    only self-signed certificates as trust anchors. A relying party that trusted the shared
    root would accept every tenant's devices; trusting this twin accepts one tenant's.
    """
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(chained.subject)
        .issuer_name(chained.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(chained.not_valid_before_utc)
        .not_valid_after(chained.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )


def issue_device_certificate(
    device_id: DeviceId,
    public_key: ec.EllipticCurvePublicKey,
    *,
    issuer: IssuingCa,
    now: dt.datetime,
) -> x509.Certificate:
    """A 24-hour TLS client certificate with CN = device ID, cut short by the CA's expiry."""
    not_after = min(now + DEVICE_CERTIFICATE_VALIDITY, issuer.certificate.not_valid_after_utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id, _validate=False)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(issuer.authority_key_id, critical=False)
        .sign(issuer.key, hashes.SHA256())
    )


def issue_proof_certificate(
    verification_code: str, *, issuer: IssuingCa, now: dt.datetime
) -> x509.Certificate:
    """Proof of possession for a relying party (e.g. Azure IoT DPS): CN = its verification code.

    Only the holder of the CA key can sign a certificate naming a code the relying party
    just chose; the certified key is thrown away.
    """
    throwaway = ec.generate_private_key(ec.SECP256R1()).public_key()
    not_after = min(now + PROOF_VALIDITY, issuer.certificate.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, verification_code)]))
        .issuer_name(issuer.certificate.subject)
        .public_key(throwaway)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(issuer.authority_key_id, critical=False)
        .sign(issuer.key, hashes.SHA256())
    )


def thumbprint(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def to_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
