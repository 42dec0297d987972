"""TPM quote appraisal: service-side appraisals per second against the bare crypto floor.

(a) floor: one ECDSA P-256 signature verify (cryptography) over a quote plus one SHA-256
    over the PCR values: the least any verifier of a TPM quote must do;
(b) appraisals: `verify_tpm_evidence` (envelope signature, quote signature, TPMS_ATTEST
    unmarshalled by tpm2-pytss, nonce, selection, PCR digest, event-log replay), then
    `check_counters` and the reference-value `appraise`, as the evidence endpoint does
    before it touches the database.

Both run on one core (pinned) in the same process, over evidence a real swtpm made for a
host that measured a boot and eight images. Each figure is the median of five rounds.
Prints both and, as its last line, the ratio b/a. Run: .venv/bin/python bench/tpm_attestation.py
"""

from __future__ import annotations

import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from tpm2_pytss.types import TPMT_SIGNATURE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from opensphere.device.tpm_host import TpmHost
from opensphere.formats.tpm import MEASUREMENT_PCR
from opensphere.formats.tpm_evidence import verify_tpm_envelope
from opensphere.service.appraisal import ReferenceValues, appraise
from opensphere.service.tpm_appraisal import check_counters, verify_tpm_evidence
from support.swtpm import Swtpm, manufacture

CORE = 0
ROUNDS = 5
SECONDS = float(os.environ.get("BENCH_SECONDS", "1.5"))
IMAGES = [(f"image-{i}", hashlib.sha256(f"image {i}".encode()).digest()) for i in range(8)]


def rate(work: Callable[[], object]) -> float:
    """Median operations per second over `ROUNDS` rounds of about `SECONDS` each."""
    rates = []
    for _ in range(ROUNDS):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < SECONDS:
            for _ in range(50):
                work()
            count += 50
        rates.append(count / elapsed)
    return statistics.median(rates)


def main() -> None:
    os.sched_setaffinity(0, {CORE})
    with tempfile.TemporaryDirectory() as folder:
        tpm = manufacture(Path(folder) / "tpm")
        with Swtpm(tpm.state) as swtpm, TpmHost(Path(folder) / "host", tcti=swtpm.tcti) as host:
            for name, digest in IMAGES:
                host.measure(name, digest)
            evidence = host.evidence(os.urandom(32), os_version="26.07", confirmation_key=None)
    claims = verify_tpm_envelope(evidence)
    release = ReferenceValues("26.07", dict(IMAGES))
    public_key = ec.EllipticCurvePublicNumbers(
        int(claims.device_id[:64], 16), int(claims.device_id[64:], 16), ec.SECP256R1()
    ).public_key()
    quote, pcr_values = claims.quote, claims.pcrs[MEASUREMENT_PCR]
    # The quote's ECDSA signature as DER, so the floor does only the verify itself.
    parsed, _ = TPMT_SIGNATURE.unmarshal(claims.quote_signature)
    der = encode_dss_signature(
        int.from_bytes(bytes(parsed.signature.ecdsa.signatureR), "big"),
        int.from_bytes(bytes(parsed.signature.ecdsa.signatureS), "big"),
    )

    def floor() -> None:
        public_key.verify(der, quote, ec.ECDSA(hashes.SHA256()))
        hashlib.sha256(pcr_values).digest()

    def appraisal() -> None:
        verified = verify_tpm_evidence(evidence)
        check_counters(None, verified.state)
        appraise(verified.as_evidence_claims(), release=release, minimums={})

    appraisal()
    floor_rate = rate(floor)
    appraisal_rate = rate(appraisal)
    print(f"floor (1 ECDSA verify + 1 SHA-256), 1 core: {floor_rate:,.0f}/s")
    print(f"TPM evidence appraisals, 1 core:            {appraisal_rate:,.0f}/s")
    print(f"ratio appraisal/floor: {appraisal_rate / floor_rate:.2f}")


if __name__ == "__main__":
    main()
