"""Stateless attestation nonces: who issued them, to which device, how fresh."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.service.nonces import NONCE_SIZE, NONCE_TTL, NonceError, Nonces

DEVICE = "ab" * 64
OTHER_DEVICE = "cd" * 64
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def nonces() -> Nonces:
    return Nonces.derive(ec.generate_private_key(ec.SECP256R1()))


def _refusal(nonces: Nonces, nonce: bytes, device_id: str, now: dt.datetime) -> str:
    with pytest.raises(NonceError) as refused:
        nonces.check(nonce, device_id, now)
    return refused.value.code


def test_a_nonce_is_accepted_for_its_device_until_it_expires(nonces: Nonces) -> None:
    nonce = nonces.issue(DEVICE, NOW, b"\x01" * 8)
    assert len(nonce) == NONCE_SIZE
    issued_at = nonces.check(nonce, DEVICE, NOW + NONCE_TTL - dt.timedelta(milliseconds=1))
    assert issued_at == int(NOW.timestamp()) * 1_000_000
    assert _refusal(nonces, nonce, DEVICE, NOW + NONCE_TTL) == "expired_nonce"


def test_every_process_of_the_service_checks_the_others_nonces() -> None:
    credential_key = ec.generate_private_key(ec.SECP256R1())
    nonce = Nonces.derive(credential_key).issue(DEVICE, NOW, b"\x02" * 8)
    assert Nonces.derive(credential_key).check(nonce, DEVICE, NOW) > 0
    another_service = Nonces.derive(ec.generate_private_key(ec.SECP256R1()))
    assert _refusal(another_service, nonce, DEVICE, NOW) == "unknown_nonce"


def test_a_nonce_presented_for_another_device_is_refused_as_such(nonces: Nonces) -> None:
    nonce = nonces.issue(DEVICE, NOW, b"\x03" * 8)
    assert _refusal(nonces, nonce, OTHER_DEVICE, NOW) == "nonce_of_another_device"


@pytest.mark.parametrize(
    ("name", "change"),
    [
        (
            "issue time moved later",
            lambda n: (int.from_bytes(n[:8], "big") + 10**7).to_bytes(8, "big") + n[8:],
        ),
        ("random part changed", lambda n: n[:8] + bytes(8) + n[16:]),
        ("service tag changed", lambda n: n[:16] + bytes(8) + n[24:]),
        ("truncated", lambda n: n[:-1]),
        ("made of zeros", lambda n: bytes(len(n))),
    ],
)
def test_a_changed_or_made_up_nonce_is_unknown(nonces: Nonces, name: str, change) -> None:  # type: ignore[no-untyped-def]
    nonce = nonces.issue(DEVICE, NOW, b"\x04" * 8)
    assert _refusal(nonces, change(nonce), DEVICE, NOW) == "unknown_nonce", name


def test_a_nonce_from_the_future_is_unknown(nonces: Nonces) -> None:
    nonce = nonces.issue(DEVICE, NOW + dt.timedelta(minutes=1), b"\x05" * 8)
    assert nonces.check(nonce, DEVICE, NOW + dt.timedelta(seconds=56)) > 0  # within the skew
    assert _refusal(nonces, nonce, DEVICE, NOW) == "unknown_nonce"


def test_nonces_issued_at_one_instant_still_have_increasing_issue_times(nonces: Nonces) -> None:
    issued = [nonces.check(nonces.issue(DEVICE, NOW, b"\x06" * 8), DEVICE, NOW) for _ in range(3)]
    assert issued == sorted(set(issued))
    later = nonces.issue(DEVICE, NOW - dt.timedelta(milliseconds=1), b"\x07" * 8)  # a jitter
    assert nonces.check(later, DEVICE, NOW) > issued[-1]


def test_a_clock_stepped_back_is_followed(nonces: Nonces) -> None:
    nonces.issue(DEVICE, NOW, b"\x08" * 8)
    earlier = NOW - dt.timedelta(minutes=1)
    nonce = nonces.issue(DEVICE, earlier, b"\x09" * 8)
    assert nonces.check(nonce, DEVICE, earlier) == int(earlier.timestamp()) * 1_000_000
