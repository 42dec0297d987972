"""Evidence (EAT in COSE_Sign1): a round trip with the emulated root of trust, then attacks."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cwt import COSE, COSEKey

from opensphere.formats.errors import FormatError, SignatureError
from opensphere.formats.evidence import (
    EVIDENCE_CONTENT_TYPE,
    EVIDENCE_PROFILE,
    INITIAL_REGISTER,
    MAX_EVIDENCE_SIZE,
    Claim,
    EvidenceClaims,
    ManufacturingState,
    Measurement,
    SecurityState,
    StaleEvidenceError,
    decode_unverified,
    encode_evidence,
    extend_register,
    replay_register,
    verify_evidence,
)
from opensphere.formats.signatures import encode_sign1
from opensphere.rot import EmulatedRootOfTrust

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")

NOW = 1_750_000_000
MAX_AGE = 300


@pytest.fixture
def rot(tmp_path: Path) -> EmulatedRootOfTrust:
    device = EmulatedRootOfTrust.manufacture(tmp_path / "device")
    device.extend("bootloader", hashlib.sha256(b"bootloader image").digest())
    device.extend("security-monitor", hashlib.sha256(b"monitor image").digest())
    device.extend("os", hashlib.sha256(b"os image").digest())
    return device


def claims_of(rot: EmulatedRootOfTrust, **changes: Any) -> EvidenceClaims:
    claims = EvidenceClaims(
        device_id=rot.device_id,
        nonce=b"service-nonce-0123456789",
        measurements=rot.event_log(),
        boot_register=rot.register(),
        os_version="25.04",
        security_state=rot.security_state,
        manufacturing_state=rot.manufacturing_state,
        security_versions={"os": 7, "bootloader": 2},
        issued_at=NOW,
    )
    return dataclasses.replace(claims, **changes)


def payload_of(evidence: bytes) -> dict[int, Any]:
    """The claims map inside a COSE_Sign1, for tests that forge variations of it."""
    payload: dict[int, Any] = cbor2.loads(cbor2.loads(evidence).value[2])
    return payload


def sign_payload(payload: dict[int, Any], rot: EmulatedRootOfTrust) -> bytes:
    """What a compromised OS could do: have the genuine key sign arbitrary claims."""
    body = cbor2.dumps(payload, canonical=True)
    return encode_sign1(body, rot.sign, content_type=EVIDENCE_CONTENT_TYPE)


def verify(evidence: bytes, rot: EmulatedRootOfTrust, now: int = NOW) -> EvidenceClaims:
    return verify_evidence(evidence, rot.public_key(), now=now, max_age=MAX_AGE)


def test_round_trip_with_the_emulated_root_of_trust(rot: EmulatedRootOfTrust) -> None:
    claims = claims_of(rot)
    evidence = encode_evidence(claims, rot.sign)
    assert verify(evidence, rot) == claims
    assert decode_unverified(evidence) == claims


def test_round_trip_with_a_confirmation_key(rot: EmulatedRootOfTrust) -> None:
    tls_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    claims = claims_of(rot, confirmation_key=tls_key)
    verified = verify(encode_evidence(claims, rot.sign), rot)
    assert verified.confirmation_key == tls_key


def test_claims_are_the_documented_cbor_keys(rot: EmulatedRootOfTrust) -> None:
    payload = payload_of(encode_evidence(claims_of(rot), rot.sign))
    assert payload[Claim.PROFILE] == EVIDENCE_PROFILE
    assert payload[Claim.UEID] == b"\x01" + hashlib.sha256(bytes.fromhex(rot.device_id)).digest()
    assert payload[Claim.DEVICE_ID] == bytes.fromhex(rot.device_id)
    assert payload[Claim.MEASUREMENTS][0] == ["bootloader", rot.event_log()[0].digest]
    assert set(payload) == {int(c) for c in Claim} - {Claim.CNF}


def test_register_is_a_sha256_chain_from_zeros() -> None:
    first, second = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    expected = hashlib.sha256(hashlib.sha256(bytes(32) + first).digest() + second).digest()
    log = [Measurement("a", first), Measurement("b", second)]
    assert replay_register(log) == expected
    assert extend_register(INITIAL_REGISTER, first) == hashlib.sha256(bytes(32) + first).digest()
    assert replay_register([]) == INITIAL_REGISTER


def test_forged_evidence_signed_by_another_key(rot: EmulatedRootOfTrust, tmp_path: Path) -> None:
    attacker = EmulatedRootOfTrust.manufacture(tmp_path / "attacker")
    forged = encode_evidence(claims_of(rot), attacker.sign)
    with pytest.raises(SignatureError):
        verify(forged, rot)


def test_evidence_verified_with_the_key_of_another_device(
    rot: EmulatedRootOfTrust, tmp_path: Path
) -> None:
    other = EmulatedRootOfTrust.manufacture(tmp_path / "other")
    evidence = encode_evidence(claims_of(rot), rot.sign)
    with pytest.raises(SignatureError):
        verify(evidence, other)


def test_tampered_measurement(rot: EmulatedRootOfTrust) -> None:
    evidence = encode_evidence(claims_of(rot), rot.sign)
    message = cbor2.loads(evidence)
    payload = cbor2.loads(message.value[2])
    payload[Claim.MEASUREMENTS][2][1] = hashlib.sha256(b"malicious os").digest()
    message.value[2] = cbor2.dumps(payload, canonical=True)
    with pytest.raises(SignatureError):
        verify(cbor2.dumps(message), rot)


def test_measurement_log_that_does_not_replay_to_the_register(rot: EmulatedRootOfTrust) -> None:
    claims = claims_of(rot, boot_register=hashlib.sha256(b"another boot").digest())
    with pytest.raises(FormatError, match="does not replay"):
        verify(encode_evidence(claims, rot.sign), rot)


def test_wrong_ueid(rot: EmulatedRootOfTrust) -> None:
    payload = payload_of(encode_evidence(claims_of(rot), rot.sign))
    payload[Claim.UEID] = b"\x01" + bytes(32)
    with pytest.raises(FormatError, match="ueid"):
        verify(sign_payload(payload, rot), rot)


def test_device_id_claim_of_another_device(rot: EmulatedRootOfTrust, tmp_path: Path) -> None:
    victim = EmulatedRootOfTrust.manufacture(tmp_path / "victim")
    payload = payload_of(encode_evidence(claims_of(rot), rot.sign))
    payload[Claim.DEVICE_ID] = bytes.fromhex(victim.device_id)
    payload[Claim.UEID] = b"\x01" + hashlib.sha256(bytes.fromhex(victim.device_id)).digest()
    with pytest.raises(FormatError, match="names device"):
        verify(sign_payload(payload, rot), rot)


def test_wrong_cose_algorithm_es384(rot: EmulatedRootOfTrust) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    pem = p384.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    body = cbor2.dumps(payload_of(encode_evidence(claims_of(rot), rot.sign)), canonical=True)
    es384 = COSE.new().encode_and_sign(
        body, key=COSEKey.from_pem(pem, alg="ES384"), protected={1: -35, 16: EVIDENCE_CONTENT_TYPE}
    )
    with pytest.raises(FormatError, match="algorithm -35 is not accepted"):
        verify(es384, rot)


def test_wrong_cose_algorithm_hs256_keyed_with_public_data(rot: EmulatedRootOfTrust) -> None:
    body = cbor2.dumps(payload_of(encode_evidence(claims_of(rot), rot.sign)), canonical=True)
    protected = cbor2.dumps({1: 5, 16: EVIDENCE_CONTENT_TYPE})
    mac = hashlib.sha256(b"public key bytes" + body).digest()
    forged = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, body, mac]))
    with pytest.raises(FormatError, match="algorithm 5 is not accepted"):
        verify(forged, rot)


def test_cose_mac0_instead_of_sign1(rot: EmulatedRootOfTrust) -> None:
    key = COSEKey.from_symmetric_key(b"k" * 32, alg="HS256")
    mac0 = COSE.new().encode_and_mac(b"claims", key, protected={1: 5})
    with pytest.raises(FormatError, match="tag 18"):
        verify(mac0, rot)


def test_malformed_cbor(rot: EmulatedRootOfTrust) -> None:
    with pytest.raises(FormatError, match="not valid CBOR"):
        verify(b"\xd2\x84\xff\x00garbage", rot)


def test_oversized_input(rot: EmulatedRootOfTrust) -> None:
    with pytest.raises(FormatError, match="limit"):
        verify(bytes(MAX_EVIDENCE_SIZE + 1), rot)


def test_truncated_input(rot: EmulatedRootOfTrust) -> None:
    evidence = encode_evidence(claims_of(rot), rot.sign)
    with pytest.raises(FormatError, match="not valid CBOR"):
        verify(evidence[:-10], rot)


def test_trailing_bytes(rot: EmulatedRootOfTrust) -> None:
    evidence = encode_evidence(claims_of(rot), rot.sign)
    with pytest.raises(FormatError, match="deterministic"):
        verify(evidence + b"\x00", rot)


def test_unknown_evidence_version(rot: EmulatedRootOfTrust) -> None:
    payload = payload_of(encode_evidence(claims_of(rot), rot.sign))
    payload[Claim.PROFILE] = "https://opensphere.dev/eat/evidence/2"
    with pytest.raises(FormatError, match="unknown evidence profile"):
        verify(sign_payload(payload, rot), rot)


def test_missing_claim(rot: EmulatedRootOfTrust) -> None:
    payload = payload_of(encode_evidence(claims_of(rot), rot.sign))
    del payload[Claim.NONCE]
    with pytest.raises(FormatError, match=r"lacks the nonce claim \(10\)"):
        verify(sign_payload(payload, rot), rot)


def test_claim_of_the_wrong_type(rot: EmulatedRootOfTrust) -> None:
    payload = payload_of(encode_evidence(claims_of(rot), rot.sign))
    payload[Claim.IAT] = str(NOW)
    with pytest.raises(FormatError, match=r"iat claim \(6\) must be int"):
        verify(sign_payload(payload, rot), rot)


def test_unknown_extra_claim(rot: EmulatedRootOfTrust) -> None:
    payload = payload_of(encode_evidence(claims_of(rot), rot.sign))
    payload[-70000] = "surprise"
    with pytest.raises(FormatError, match="does not define"):
        verify(sign_payload(payload, rot), rot)


def test_unknown_manufacturing_state(rot: EmulatedRootOfTrust) -> None:
    payload = payload_of(encode_evidence(claims_of(rot), rot.sign))
    payload[Claim.MANUFACTURING_STATE] = "Finished"
    with pytest.raises(FormatError, match="not a ManufacturingState"):
        verify(sign_payload(payload, rot), rot)


def test_private_key_in_the_confirmation_claim_is_refused(rot: EmulatedRootOfTrust) -> None:
    leaked = ec.generate_private_key(ec.SECP256R1())
    pem = leaked.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    payload = payload_of(encode_evidence(claims_of(rot), rot.sign))
    payload[Claim.CNF] = {1: COSEKey.from_pem(pem, alg="ES256").to_dict()}
    with pytest.raises(FormatError, match="public key"):
        verify(sign_payload(payload, rot), rot)


def test_issued_at_in_the_future(rot: EmulatedRootOfTrust) -> None:
    evidence = encode_evidence(claims_of(rot, issued_at=NOW + 3600), rot.sign)
    with pytest.raises(StaleEvidenceError, match="future"):
        verify(evidence, rot)


def test_small_clock_skew_is_tolerated(rot: EmulatedRootOfTrust) -> None:
    evidence = encode_evidence(claims_of(rot, issued_at=NOW + 30), rot.sign)
    assert verify(evidence, rot).issued_at == NOW + 30


def test_issued_at_too_old(rot: EmulatedRootOfTrust) -> None:
    evidence = encode_evidence(claims_of(rot), rot.sign)
    with pytest.raises(StaleEvidenceError, match="old"):
        verify(evidence, rot, now=NOW + MAX_AGE + 1)


@pytest.mark.parametrize("nonce", [b"", b"1234567", bytes(65)])
def test_nonce_outside_8_to_64_bytes_is_refused(rot: EmulatedRootOfTrust, nonce: bytes) -> None:
    with pytest.raises(FormatError, match="nonce"):
        claims_of(rot, nonce=nonce)


def test_measurement_digest_must_be_32_bytes() -> None:
    with pytest.raises(FormatError, match="32 bytes"):
        Measurement("os", b"short")


def test_signer_returning_der_is_a_programming_error(rot: EmulatedRootOfTrust) -> None:
    key = ec.generate_private_key(ec.SECP256R1())

    def der_signer(data: bytes) -> bytes:
        return key.sign(data, ec.ECDSA(hashes.SHA256()))

    with pytest.raises(RuntimeError, match="raw r‖s"):
        encode_evidence(claims_of(rot), der_signer)


def test_security_state_accepts_the_enum_values(rot: EmulatedRootOfTrust) -> None:
    claims = claims_of(rot, security_state=SecurityState.TEST)
    assert verify(encode_evidence(claims, rot.sign), rot).security_state is SecurityState.TEST
    assert claims_of(rot).manufacturing_state is ManufacturingState.BLANK


def test_claims_normalise_what_the_caller_passes(rot: EmulatedRootOfTrust) -> None:
    claims = claims_of(
        rot,
        measurements=(m for m in rot.event_log()),
        security_state="SECURE",
        manufacturing_state="Blank",
    )
    assert claims.measurements == rot.event_log()
    assert claims.security_state is SecurityState.SECURE
    assert claims.manufacturing_state is ManufacturingState.BLANK
