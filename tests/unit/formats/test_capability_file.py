"""Capability files: bound to one device, signed by a trusted key, strict about their bytes."""

from __future__ import annotations

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.formats.capability import (
    CapabilityDeviceMismatchError,
    CapabilityError,
    CapabilityGrant,
    DeviceCapability,
    ExpiredCapabilityError,
    UntrustedCapabilitySignerError,
    decode_capability_unverified,
    encode_capability_file,
    verify_capability_file,
)
from opensphere.formats.device_id import DeviceId, device_id_from_public_key
from opensphere.formats.errors import FormatError, SignatureError
from opensphere.formats.image_package import KeySigner, key_thumbprint
from opensphere.formats.signatures import encode_sign1

NOW = 1_772_323_200


@pytest.fixture(scope="module")
def service() -> KeySigner:
    return KeySigner(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="module")
def device_id() -> DeviceId:
    return device_id_from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())


def _trusted(signer: KeySigner) -> dict[bytes, ec.EllipticCurvePublicKey]:
    return {key_thumbprint(signer.public_key()): signer.public_key()}


def _grant(signer: KeySigner, device_id: DeviceId, **changes: object) -> CapabilityGrant:
    fields: dict[str, object] = {
        "device_id": device_id,
        "capabilities": frozenset({DeviceCapability.APP_DEVELOPMENT}),
        "issued_at": NOW,
        "signer_thumbprint": key_thumbprint(signer.public_key()),
        **changes,
    }
    return CapabilityGrant(**fields)  # type: ignore[arg-type]


def test_round_trip_with_the_original_numbers(service: KeySigner, device_id: DeviceId) -> None:
    grant = _grant(
        service,
        device_id,
        capabilities={DeviceCapability.APP_DEVELOPMENT, DeviceCapability.FIELD_SERVICING},
        expires_at=NOW + 86400,
    )
    data = encode_capability_file(grant, service.sign)
    verified = verify_capability_file(data, _trusted(service), device_id=device_id, now=NOW + 10)
    assert verified == grant
    assert [int(c) for c in sorted(verified.capabilities)] == [0xB, 0xD]
    assert DeviceCapability.APP_DEVELOPMENT.display_name == "appDevelopment"


def test_capability_file_for_another_device_is_refused(
    service: KeySigner, device_id: DeviceId
) -> None:
    other = device_id_from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    data = encode_capability_file(_grant(service, other), service.sign)
    with pytest.raises(CapabilityDeviceMismatchError) as caught:
        verify_capability_file(data, _trusted(service), device_id=device_id, now=NOW)
    assert caught.value.actual == other


def test_signer_not_trusted_is_refused(service: KeySigner, device_id: DeviceId) -> None:
    rogue = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    data = encode_capability_file(_grant(rogue, device_id), rogue.sign)
    with pytest.raises(UntrustedCapabilitySignerError):
        verify_capability_file(data, _trusted(service), device_id=device_id, now=NOW)


def test_claiming_a_trusted_signer_without_its_key_is_refused(
    service: KeySigner, device_id: DeviceId
) -> None:
    rogue = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    data = encode_capability_file(_grant(service, device_id), rogue.sign)
    with pytest.raises(SignatureError):
        verify_capability_file(data, _trusted(service), device_id=device_id, now=NOW)


def test_tampered_payload_is_refused(service: KeySigner, device_id: DeviceId) -> None:
    data = bytearray(encode_capability_file(_grant(service, device_id), service.sign))
    position = bytes(data).index(bytes.fromhex(device_id[:16]))
    data[position] ^= 0x01
    with pytest.raises(FormatError):
        verify_capability_file(bytes(data), _trusted(service), device_id=device_id, now=NOW)


def test_expired_file_is_refused(service: KeySigner, device_id: DeviceId) -> None:
    data = encode_capability_file(_grant(service, device_id, expires_at=NOW + 60), service.sign)
    verify_capability_file(data, _trusted(service), device_id=device_id, now=NOW + 59)
    with pytest.raises(ExpiredCapabilityError):
        verify_capability_file(data, _trusted(service), device_id=device_id, now=NOW + 60)


def _signed_payload(service: KeySigner, payload: dict[int, object]) -> bytes:
    body = cbor2.dumps(payload, canonical=True)
    return encode_sign1(
        body, service.sign, content_type="application/vnd.opensphere.capability+cose"
    )


def _payload(service: KeySigner, device_id: DeviceId) -> dict[int, object]:
    return {
        1: 1,
        2: bytes.fromhex(device_id),
        3: [0xB],
        4: NOW,
        6: key_thumbprint(service.public_key()),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({1: 2}, "unknown capability file version"),
        ({3: [0x1]}, "unknown capability numbers"),
        ({3: [0xD, 0xB]}, "ascending"),
        ({3: [0xB, 0xB]}, "ascending"),
        ({7: 0}, "unknown fields"),
        ({4: "now"}, "issued_at"),
        ({2: b"short"}, "64 bytes"),
    ],
)
def test_malformed_payloads_are_refused(
    service: KeySigner, device_id: DeviceId, change: dict[int, object], message: str
) -> None:
    data = _signed_payload(service, {**_payload(service, device_id), **change})
    with pytest.raises(CapabilityError, match=message):
        decode_capability_unverified(data)


def test_other_signed_formats_cannot_pass_for_a_capability_file(
    service: KeySigner, device_id: DeviceId
) -> None:
    body = cbor2.dumps(_payload(service, device_id), canonical=True)
    evidence_typed = encode_sign1(body, service.sign, content_type="application/eat+cwt")
    with pytest.raises(FormatError, match="typ"):
        verify_capability_file(evidence_typed, _trusted(service), device_id=device_id, now=NOW)


def test_grant_with_expiry_before_issue_is_refused(service: KeySigner, device_id: DeviceId) -> None:
    with pytest.raises(CapabilityError, match="expire after"):
        _grant(service, device_id, expires_at=NOW)
