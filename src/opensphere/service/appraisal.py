"""Appraisal of device evidence, with no I/O: bytes, reference values and `now` in.

`verify_device_evidence` proves who made the evidence (the device whose ID is the key)
and when; `appraise` decides whether what it says is good: a known OS whose measurements
match the operator's reference values, and security versions not below the minimums.
The nonce is checked by the shell, which owns the single-use store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from opensphere.formats.device_id import public_key_from_device_id
from opensphere.formats.evidence import (
    EvidenceClaims,
    SecurityState,
    decode_unverified,
    verify_evidence,
)

EVIDENCE_MAX_AGE = 300
CUSTOMER_STAGE_PREFIXES = ("app:", "board-config:")
"""Stages named `app:<component>` or `board-config:<component>` measure the customer's
images; the OS reference values do not cover them (deployments will)."""
DEVICE_SPECIFIC_STAGES = frozenset({"capability"})
"""The `capability` stage measures the device's capability file (e.g. appDevelopment). The file
is signed for one device ID at one time, so no OS release can hold a reference value for it.
Skipping it hides nothing from the OS appraisal: every OS stage is still required and
compared, and a device measures the file only after checking its signature and device ID."""


class AppraisalError(Exception):
    """Evidence refused; `code` is stable, `detail` is for the service log only."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ReferenceValues:
    """The known-good measurements of one OS version: stage → SHA-256 digest."""

    version: str
    measurements: Mapping[str, bytes]

    @classmethod
    def from_stored(cls, version: str, measurements: Sequence[Sequence[str]]) -> ReferenceValues:
        return cls(version, {stage: bytes.fromhex(digest) for stage, digest in measurements})


def verify_device_evidence(unverified_evidence: bytes, *, now: int) -> EvidenceClaims:
    """Evidence signed by the device it names, recent, whose log replays to its register.

    The key comes from the device ID inside the evidence (the ID is the public key), so
    evidence signed by any other key fails here, before anything is looked up.
    """
    claimed = decode_unverified(unverified_evidence)
    return verify_evidence(
        unverified_evidence,
        public_key_from_device_id(claimed.device_id),
        now=now,
        max_age=EVIDENCE_MAX_AGE,
    )


def appraise(
    claims: EvidenceClaims,
    *,
    release: ReferenceValues | None,
    minimums: Mapping[str, int],
) -> None:
    """Raise `AppraisalError` unless the device runs a known-good OS at allowed versions."""
    if claims.security_state is SecurityState.EOL:
        raise AppraisalError("end_of_life", "the device reports security state EOL")
    if release is None:
        raise AppraisalError(
            "unknown_os_version", f"OS version {claims.os_version!r} is not a registered release"
        )
    seen: set[str] = set()
    for measurement in claims.measurements:
        if (
            measurement.stage.startswith(CUSTOMER_STAGE_PREFIXES)
            or measurement.stage in DEVICE_SPECIFIC_STAGES
        ):
            continue
        if measurement.stage in seen:
            raise AppraisalError(
                "unknown_measurement", f"stage {measurement.stage!r} is measured twice"
            )
        seen.add(measurement.stage)
        expected = release.measurements.get(measurement.stage)
        if expected is None:
            raise AppraisalError(
                "unknown_measurement",
                f"stage {measurement.stage!r} is not part of OS {release.version}",
            )
        if expected != measurement.digest:
            raise AppraisalError(
                "unknown_measurement",
                f"stage {measurement.stage!r} does not match OS {release.version}'s reference "
                f"value ({measurement.digest.hex()[:16]}… instead of {expected.hex()[:16]}…)",
            )
    missing = sorted(set(release.measurements) - seen)
    if missing:
        raise AppraisalError(
            "missing_measurement", f"stages {missing} of OS {release.version} were not measured"
        )
    for component, minimum in sorted(minimums.items()):
        version = claims.security_versions.get(component, 0)
        if version < minimum:
            raise AppraisalError(
                "security_version_too_low",
                f"component {component!r} is at security version {version}; the minimum is "
                f"{minimum}",
            )
