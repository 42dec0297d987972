"""Pure TPM checks without a TPM: counter rules and strict unmarshalling."""

from __future__ import annotations

import pytest
from tpm2_pytss.types import TPMS_ATTEST

from opensphere.formats.tpm import TpmStructureError, parse_attestation_key, parse_quote
from opensphere.service.appraisal import AppraisalError
from opensphere.service.tpm_appraisal import TpmState, check_counters

BOOT_A, BOOT_B = b"a" * 32, b"b" * 32
LAST = TpmState(clock=5000, reset_count=3, restart_count=1, boot_event=BOOT_A)


@pytest.mark.parametrize(
    ("current", "code"),
    [
        (TpmState(4999, 3, 1, BOOT_A), "tpm_clock_rewound"),
        (TpmState(6000, 2, 1, BOOT_B), "tpm_counter_rewound"),
        (TpmState(6000, 3, 0, BOOT_A), "tpm_counter_rewound"),
        (TpmState(100, 4, 0, BOOT_A), "tpm_reset_without_reboot"),
        (TpmState(6000, 3, 1, BOOT_B), "reboot_without_tpm_reset"),
    ],
)
def test_counters_that_go_back_or_reset_without_reboot_are_refused(
    current: TpmState, code: str
) -> None:
    with pytest.raises(AppraisalError) as refused:
        check_counters(LAST, current)
    assert refused.value.code == code


def test_reboot_may_bring_the_clock_back_and_first_attestation_has_no_history() -> None:
    check_counters(LAST, TpmState(clock=4000, reset_count=4, restart_count=0, boot_event=BOOT_B))
    check_counters(LAST, TpmState(clock=5001, reset_count=3, restart_count=1, boot_event=BOOT_A))
    check_counters(None, LAST)


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\x54\x43\x47", b"\xff\x54\x43\x47\x80\x18\xff\xff", bytes(5000)],
    ids=["empty", "magic-only", "oversized-name", "too-large"],
)
def test_malformed_quotes_and_keys_are_refused(data: bytes) -> None:
    with pytest.raises(TpmStructureError):
        parse_quote(data)
    with pytest.raises(TpmStructureError):
        parse_attestation_key(data)


def test_a_quote_of_another_kind_is_refused() -> None:
    attest = TPMS_ATTEST(magic=0xFF544347, type=0x8017)  # TPM_ST_ATTEST_CERTIFY
    with pytest.raises(TpmStructureError, match="not a quote"):
        parse_quote(attest.marshal())
