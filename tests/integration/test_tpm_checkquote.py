"""Our quote verification and tpm2-tools' `tpm2_checkquote` agree on every case.

tpm2_checkquote judges a quote alone: signature by the AK, qualifying data, and PCR
values against the digest over the given selection. So the cases are those: the good
quote and each way to break one of them. (The event log, the counters and the EK binding
are beyond what it can judge; `test_tpm_attestation.py` covers them.)
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from opensphere.device.tpm_host import TpmHost
from opensphere.formats.errors import FormatError
from opensphere.formats.tpm import MEASUREMENT_PCR
from opensphere.formats.tpm_evidence import encode_tpm_evidence, verify_tpm_envelope
from opensphere.service.appraisal import AppraisalError
from opensphere.service.tpm_appraisal import verify_tpm_evidence
from support.debian import ensure_packages
from support.swtpm import TPM_PACKAGES, Swtpm, manufacture

NONCE = b"opensphere-checkquote-nonce-0001"


@dataclass(frozen=True)
class Case:
    quote: bytes
    signature: bytes
    pcr: bytes
    nonce: bytes
    selection: str = f"sha256:{MEASUREMENT_PCR}"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TpmHost]:
    ensure_packages(TPM_PACKAGES)
    folder = tmp_path_factory.mktemp("checkquote")
    tpm = manufacture(folder / "tpm")
    with Swtpm(tpm.state) as swtpm, TpmHost(folder / "host", tcti=swtpm.tcti) as opened:
        opened.measure("os", b"\x11" * 32)
        yield opened


def tools_accept(case: Case, ak_pem: bytes, folder: Path) -> bool:
    (folder / "ak.pem").write_bytes(ak_pem)
    (folder / "quote.msg").write_bytes(case.quote)
    (folder / "quote.sig").write_bytes(case.signature)
    (folder / "pcrs.bin").write_bytes(case.pcr)
    result = subprocess.run(
        [
            "tpm2_checkquote",
            "-u", str(folder / "ak.pem"),
            "-m", str(folder / "quote.msg"),
            "-s", str(folder / "quote.sig"),
            "-f", str(folder / "pcrs.bin"),
            "-l", case.selection,
            "-g", "sha256",
            "-q", case.nonce.hex(),
        ],
        capture_output=True,
        check=False,
    )  # fmt: skip
    return result.returncode == 0


def ours_accept(host: TpmHost, case: Case) -> bool:
    evidence = host.evidence(case.nonce, os_version="26.07", confirmation_key=None)
    claims = verify_tpm_envelope(evidence)
    forged = replace(
        claims,
        quote=case.quote,
        quote_signature=case.signature,
        pcrs={MEASUREMENT_PCR: case.pcr},
    )
    try:
        verify_tpm_evidence(encode_tpm_evidence(forged, host.rot.sign))
    except (FormatError, AppraisalError):
        return False
    return True


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


CASES: dict[str, tuple[bool, Callable[[Case], Case]]] = {
    "good": (True, lambda c: c),
    "other-nonce": (False, lambda c: Case(c.quote, c.signature, c.pcr, b"another nonce 123")),
    "pcr-value-changed": (False, lambda c: Case(c.quote, c.signature, _flip(c.pcr, 0), c.nonce)),
    "quote-tampered": (False, lambda c: Case(_flip(c.quote, 40), c.signature, c.pcr, c.nonce)),
    "signature-tampered": (
        False,
        lambda c: Case(c.quote, _flip(c.signature, 10), c.pcr, c.nonce),
    ),
    "truncated-quote": (False, lambda c: Case(c.quote[:-3], c.signature, c.pcr, c.nonce)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tpm2_checkquote_and_opensphere_agree(host: TpmHost, tmp_path: Path, name: str) -> None:
    expected, mangle = CASES[name]
    quote, signature = host.rot.quote(NONCE)
    case = mangle(Case(quote, signature, host.rot.register(), NONCE))
    ak_pem = host.rot.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    theirs = tools_accept(case, ak_pem, tmp_path)
    ours = ours_accept(host, case)
    assert (theirs, ours) == (expected, expected)


def test_tpm2_checkquote_and_opensphere_refuse_another_selection(
    host: TpmHost, tmp_path: Path
) -> None:
    """A quote over PCRs 15 and 16 checked against the policy's selection (15 alone)."""
    quote, signature = host.rot.quote(NONCE, selection="sha256:15,16")
    case = Case(quote, signature, host.rot.register(), NONCE)
    ak_pem = host.rot.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert tools_accept(case, ak_pem, tmp_path) is False
    assert ours_accept(host, case) is False
