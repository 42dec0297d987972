"""Appraisal rules: known OS, matching measurements, customer and device stages, minimums."""

from __future__ import annotations

import hashlib
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.formats.device_id import device_id_from_public_key
from opensphere.formats.evidence import (
    EvidenceClaims,
    ManufacturingState,
    Measurement,
    SecurityState,
    replay_register,
)
from opensphere.service.appraisal import AppraisalError, ReferenceValues, appraise

DEVICE = device_id_from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
REFERENCE = {s: hashlib.sha256(s.encode()).digest() for s in ("bootloader", "monitor", "os")}
RELEASE = ReferenceValues("26.01", REFERENCE)


def _claims(
    measurements: tuple[Measurement, ...] | None = None,
    *,
    versions: dict[str, int] | None = None,
    state: SecurityState = SecurityState.SECURE,
) -> EvidenceClaims:
    measured = measurements or tuple(Measurement(s, d) for s, d in REFERENCE.items())
    return EvidenceClaims(
        device_id=DEVICE,
        nonce=b"n" * 32,
        measurements=measured,
        boot_register=replay_register(measured),
        os_version="26.01",
        security_state=state,
        manufacturing_state=ManufacturingState.DEVICE_COMPLETE,
        security_versions=versions or {"os": 2},
        issued_at=int(time.time()),
    )


def _code(claims: EvidenceClaims, **kwargs: object) -> str:
    with pytest.raises(AppraisalError) as caught:
        appraise(claims, **{"release": RELEASE, "minimums": {}, **kwargs})  # type: ignore[arg-type]
    return caught.value.code


def test_known_good_evidence_passes() -> None:
    appraise(_claims(), release=RELEASE, minimums={"os": 2})


def test_customer_stages_are_not_os_measurements() -> None:
    apps = (
        *(Measurement(s, d) for s, d in REFERENCE.items()),
        Measurement("app:5f3b", b"\x01" * 32),
        Measurement("board-config:77aa", b"\x02" * 32),
    )
    appraise(_claims(apps), release=RELEASE, minimums={})


def test_unknown_release_is_refused() -> None:
    assert _code(_claims(), release=None) == "unknown_os_version"


def test_wrong_digest_unknown_stage_missing_stage_and_duplicates_are_refused() -> None:
    good = [Measurement(s, d) for s, d in REFERENCE.items()]
    assert _code(_claims((*good[:2], Measurement("os", b"\x00" * 32)))) == "unknown_measurement"
    assert _code(_claims((*good, Measurement("extra", b"\x00" * 32)))) == "unknown_measurement"
    assert _code(_claims(tuple(good[:2]))) == "missing_measurement"
    assert _code(_claims((*good, good[0]))) == "unknown_measurement"


def test_versions_below_the_minimum_are_refused() -> None:
    assert _code(_claims(versions={"os": 1}), minimums={"os": 2}) == "security_version_too_low"
    assert _code(_claims(versions={"os": 5}), minimums={"fw": 1}) == "security_version_too_low"


def test_end_of_life_devices_are_refused() -> None:
    assert _code(_claims(state=SecurityState.EOL)) == "end_of_life"


def test_the_device_specific_capability_stage_does_not_fail_os_appraisal() -> None:
    """A development device measures its own capability file, which no release can list."""
    measured = (
        *(Measurement(s, d) for s, d in REFERENCE.items()),
        Measurement("capability", b"\x03" * 32),
        Measurement("app:5f3b", b"\x01" * 32),
    )
    appraise(_claims(measured), release=RELEASE, minimums={})
    without_os = (Measurement("capability", b"\x03" * 32),)
    assert _code(_claims(without_os)) == "missing_measurement"
