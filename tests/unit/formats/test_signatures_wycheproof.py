"""Every Wycheproof ECDSA P-256/SHA-256 case through the project's own verification path."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.formats.errors import SignatureError
from opensphere.formats.signatures import verify_es256, verify_es256_der

VECTORS = Path(__file__).parents[2] / "vectors" / "wycheproof"

Verifier = Callable[[ec.EllipticCurvePublicKey, bytes, bytes], None]


def run_all(file_name: str, verify: Verifier) -> tuple[Counter[str], list[str]]:
    """Run every case; return counts by expected result and the cases that misbehaved."""
    suite: dict[str, Any] = json.loads((VECTORS / file_name).read_text())
    counts: Counter[str] = Counter()
    failures: list[str] = []
    for group in suite["testGroups"]:
        key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), bytes.fromhex(group["publicKey"]["uncompressed"])
        )
        for case in group["tests"]:
            counts[case["result"]] += 1
            try:
                verify(key, bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"]))
                accepted = True
            except SignatureError:
                accepted = False
            if case["result"] == "valid" and not accepted:
                failures.append(f"tcId {case['tcId']} ({case['comment']}): valid but refused")
            if case["result"] == "invalid" and accepted:
                failures.append(f"tcId {case['tcId']} ({case['comment']}): invalid but accepted")
    assert sum(counts.values()) == suite["numberOfTests"]
    return counts, failures


def test_every_p1363_case_through_verify_es256() -> None:
    counts, failures = run_all("ecdsa_secp256r1_sha256_p1363_test.json", verify_es256)
    assert counts == Counter(valid=173, invalid=89)
    assert failures == []


def test_every_der_case_through_verify_es256_der() -> None:
    counts, failures = run_all("ecdsa_secp256r1_sha256_test.json", verify_es256_der)
    assert counts == Counter(valid=174, invalid=310)
    assert failures == []


def test_raw_signature_of_wrong_length_is_a_signature_error() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(SignatureError, match="64 bytes"):
        verify_es256(key, b"message", bytes(63))


def test_key_on_another_curve_is_a_signature_error() -> None:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(SignatureError, match="P-256"):
        verify_es256(key, b"message", bytes(range(1, 65)))
