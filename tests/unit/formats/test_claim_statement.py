"""Claim statements: only the device itself can ask to be claimed into a tenant."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import cbor2
import pytest

from opensphere.formats.claim import (
    CLAIM_CONTENT_TYPE,
    MAX_CLAIM_STATEMENT_SIZE,
    ClaimField,
    ClaimStatement,
    StaleClaimStatementError,
    decode_claim_statement_unverified,
    encode_claim_statement,
    verify_claim_statement,
)
from opensphere.formats.errors import FormatError, SignatureError
from opensphere.formats.evidence import EvidenceClaims, encode_evidence
from opensphere.formats.signatures import encode_sign1
from opensphere.rot import EmulatedRootOfTrust

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")

NOW = 1_750_000_000
MAX_AGE = 600
TENANT = uuid.UUID("6f1c1f2e-8a4b-4a43-9d5e-0c8f1b2a3c4d")


@pytest.fixture
def rot(tmp_path: Path) -> EmulatedRootOfTrust:
    return EmulatedRootOfTrust.manufacture(tmp_path / "device")


def statement_of(rot: EmulatedRootOfTrust, nonce: bytes | None = None) -> ClaimStatement:
    return ClaimStatement(device_id=rot.device_id, tenant_id=TENANT, issued_at=NOW, nonce=nonce)


def resign(data: bytes, rot: EmulatedRootOfTrust, **changes: Any) -> bytes:
    """Re-sign a statement's map with `changes` applied (keys are ClaimField names)."""
    body: dict[int, Any] = cbor2.loads(cbor2.loads(data).value[2])
    for name, value in changes.items():
        body[ClaimField[name.upper()]] = value
    payload = cbor2.dumps({int(k): v for k, v in body.items()}, canonical=True)
    return encode_sign1(payload, rot.sign, content_type=CLAIM_CONTENT_TYPE)


def verify(data: bytes, now: int = NOW) -> ClaimStatement:
    return verify_claim_statement(data, now=now, max_age=MAX_AGE)


def test_round_trip(rot: EmulatedRootOfTrust) -> None:
    statement = statement_of(rot)
    assert verify(encode_claim_statement(statement, rot.sign)) == statement


def test_round_trip_with_a_service_nonce(rot: EmulatedRootOfTrust) -> None:
    statement = statement_of(rot, nonce=b"claim-challenge-42")
    data = encode_claim_statement(statement, rot.sign)
    assert verify(data).nonce == b"claim-challenge-42"
    assert decode_claim_statement_unverified(data) == statement


def test_claim_by_id_alone_signed_by_another_key(rot: EmulatedRootOfTrust, tmp_path: Path) -> None:
    attacker = EmulatedRootOfTrust.manufacture(tmp_path / "attacker")
    forged = encode_claim_statement(statement_of(rot), attacker.sign)
    with pytest.raises(SignatureError):
        verify(forged)


def test_tampered_tenant(rot: EmulatedRootOfTrust) -> None:
    data = encode_claim_statement(statement_of(rot), rot.sign)
    message = cbor2.loads(data)
    body = cbor2.loads(message.value[2])
    body[ClaimField.TENANT_ID] = str(uuid.UUID(int=1))
    message.value[2] = cbor2.dumps(body, canonical=True)
    with pytest.raises(SignatureError):
        verify(cbor2.dumps(message))


def test_evidence_cannot_pass_as_a_claim_statement(rot: EmulatedRootOfTrust) -> None:
    evidence = encode_evidence(
        EvidenceClaims(
            device_id=rot.device_id,
            nonce=b"12345678",
            measurements=(),
            boot_register=bytes(32),
            os_version="1",
            security_state=rot.security_state,
            manufacturing_state=rot.manufacturing_state,
            security_versions={},
            issued_at=NOW,
        ),
        rot.sign,
    )
    with pytest.raises(FormatError, match="typ header"):
        verify(evidence)


def test_unknown_version(rot: EmulatedRootOfTrust) -> None:
    data = resign(encode_claim_statement(statement_of(rot), rot.sign), rot, version=2)
    with pytest.raises(FormatError, match="unknown claim statement version 2"):
        verify(data)


def test_tenant_id_not_in_canonical_form(rot: EmulatedRootOfTrust) -> None:
    data = encode_claim_statement(statement_of(rot), rot.sign)
    with pytest.raises(FormatError, match="lowercase hyphenated"):
        verify(resign(data, rot, tenant_id=str(TENANT).upper()))


def test_tenant_id_not_a_uuid(rot: EmulatedRootOfTrust) -> None:
    data = encode_claim_statement(statement_of(rot), rot.sign)
    with pytest.raises(FormatError, match="not a UUID"):
        verify(resign(data, rot, tenant_id="my-tenant"))


def test_device_id_of_the_wrong_type(rot: EmulatedRootOfTrust) -> None:
    data = encode_claim_statement(statement_of(rot), rot.sign)
    with pytest.raises(FormatError, match="must be str"):
        verify(resign(data, rot, device_id=bytes.fromhex(rot.device_id)))


def test_made_in_the_future(rot: EmulatedRootOfTrust) -> None:
    with pytest.raises(StaleClaimStatementError, match="future"):
        verify(encode_claim_statement(statement_of(rot), rot.sign), now=NOW - 3600)


def test_too_old(rot: EmulatedRootOfTrust) -> None:
    with pytest.raises(StaleClaimStatementError, match="make a new one"):
        verify(encode_claim_statement(statement_of(rot), rot.sign), now=NOW + MAX_AGE + 1)


def test_oversized(rot: EmulatedRootOfTrust) -> None:
    with pytest.raises(FormatError, match="limit"):
        verify(bytes(MAX_CLAIM_STATEMENT_SIZE + 1))


def test_truncated(rot: EmulatedRootOfTrust) -> None:
    data = encode_claim_statement(statement_of(rot), rot.sign)
    with pytest.raises(FormatError, match="not valid CBOR"):
        verify(data[:-1])
