"""Claimable identities in bulk: filling a registry with a million devices, fast.

Each identity is what a real device brings to a claim, and nothing less: its own P-256
identity key, an IDevID from the manufacturer CA, and a claim statement signed with that
key. Nothing more is made: no root of trust folder, no flash, no OS slots. The identity
key is dropped once the statement is signed, so these devices can be claimed but never
attest: they are for loading a registry (benchmarks, scale tests), not for running a fleet.

Work is spread over processes (`ProcessPoolExecutor`): one identity costs three ECDSA
signatures and a certificate, all CPU. Batches are made at most a few ahead of what the
caller has taken, so memory stays bounded and each statement is fresh when it is sent (the
service accepts statements up to ten minutes old).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.factory.manufacturer import ManufacturingError, issue_idevid
from opensphere.formats.claim import ClaimStatement, encode_claim_statement
from opensphere.formats.device_id import DeviceId, device_id_from_public_key
from opensphere.formats.signatures import raw_signature_from_der

IDEVID_BACKDATE = dt.timedelta(hours=1)
"""An IDevID is made at the factory, before any claim: a service clock a little behind the
generator's must still find the certificate valid."""


@dataclass(frozen=True, slots=True)
class ClaimableIdentity:
    """One device's claim: its ID, its signed claim statement (COSE) and its IDevID (PEM)."""

    device_id: DeviceId
    claim_statement: bytes
    idevid_pem: bytes


def make_claimable_identity(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    tenant_id: uuid.UUID,
    *,
    now: dt.datetime,
) -> ClaimableIdentity:
    """A new identity key, its IDevID and its claim statement into `tenant_id`, issued `now`."""
    key = ec.generate_private_key(ec.SECP256R1())
    device_id = device_id_from_public_key(key.public_key())
    idevid = issue_idevid(ca_key, ca_cert, key.public_key(), device_id, now=now - IDEVID_BACKDATE)

    def sign(data: bytes) -> bytes:
        return raw_signature_from_der(key.sign(data, ec.ECDSA(hashes.SHA256())))

    statement = ClaimStatement(device_id, tenant_id, int(now.timestamp()))
    return ClaimableIdentity(
        device_id=device_id,
        claim_statement=encode_claim_statement(statement, sign),
        idevid_pem=idevid.public_bytes(serialization.Encoding.PEM),
    )


_worker_ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None = None


def _load_worker_ca(ca_key_der: bytes, ca_cert_der: bytes) -> None:
    """Process initializer: keys do not pickle, so each worker parses the CA once."""
    global _worker_ca
    key = serialization.load_der_private_key(ca_key_der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ManufacturingError("the manufacturer CA key is not an EC key")
    _worker_ca = (key, x509.load_der_x509_certificate(ca_cert_der))


def _make_batch(tenant_id: uuid.UUID, count: int) -> list[ClaimableIdentity]:
    if _worker_ca is None:
        raise RuntimeError("the worker was started without the manufacturer CA")
    now = dt.datetime.now(dt.UTC)
    return [make_claimable_identity(*_worker_ca, tenant_id, now=now) for _ in range(count)]


def generate_claimable_identities(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    tenant_id: uuid.UUID,
    *,
    count: int,
    batch: int,
    workers: int | None = None,
) -> Iterator[list[ClaimableIdentity]]:
    """`count` identities in batches of `batch` (the last may be smaller), in order of making.

    `workers` processes (default: one per CPU) each make whole batches; at most two batches
    per worker wait for the caller. Closing the iterator early stops the workers.
    """
    if count < 0 or batch < 1:
        raise ValueError("count must be ≥ 0 and batch ≥ 1")
    workers = workers or os.cpu_count() or 1
    sizes = iter([batch] * (count // batch) + ([count % batch] if count % batch else []))
    key_der = ca_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_der = ca_cert.public_bytes(serialization.Encoding.DER)
    with ProcessPoolExecutor(
        max_workers=workers, initializer=_load_worker_ca, initargs=(key_der, cert_der)
    ) as pool:
        pending: deque[Future[list[ClaimableIdentity]]] = deque()
        try:
            for size in sizes:
                pending.append(pool.submit(_make_batch, tenant_id, size))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
