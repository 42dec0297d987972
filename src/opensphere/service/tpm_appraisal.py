"""Appraisal of TPM evidence, with no I/O and no TPM: bytes, stored state and values in.

`verify_tpm_evidence` proves the evidence is what the device's TPM produced for this
challenge: the envelope and the quote are both signed by the attestation key the device
ID names (the key bound to the EK at claim time, see `service.tpm`), the quote's
qualifying data is the envelope's nonce, it covers exactly the policy's PCRs, the
reported PCR values hash to its PCR digest, and the event log replays to those values.
`check_counters` compares the quote's clock and counters with the last attestation's.
Reference values are then the emulated path's own `appraise`, over the event log.
"""

from __future__ import annotations

from dataclasses import dataclass

from opensphere.formats.device_id import public_key_from_device_id
from opensphere.formats.evidence import EvidenceClaims, ManufacturingState, SecurityState
from opensphere.formats.tpm import (
    BOOT_EVENT,
    MEASUREMENT_PCR,
    QUOTE_SELECTION,
    ClockInfo,
    QuoteInfo,
    parse_quote,
    pcr_digest,
    replay_pcr,
    selected_values,
    verify_quote_signature,
)
from opensphere.formats.tpm_evidence import TpmEvidenceClaims, verify_tpm_envelope
from opensphere.service.appraisal import AppraisalError


@dataclass(frozen=True, slots=True)
class TpmState:
    """What the service keeps of a TPM's last accepted quote."""

    clock: int
    reset_count: int
    restart_count: int
    boot_event: bytes


@dataclass(frozen=True, slots=True)
class TpmEvidence:
    """Verified TPM evidence: the envelope's claims, the quote, and the state it shows."""

    claims: TpmEvidenceClaims
    quote: QuoteInfo
    state: TpmState

    def as_evidence_claims(self) -> EvidenceClaims:
        """The claims in the emulated path's terms, for `appraise` and the certificate.

        The boot event is left out: it measures the host's boot ID, which no OS release
        can have a reference value for. TPM devices have no Pluton states or fuses.
        """
        return EvidenceClaims(
            device_id=self.claims.device_id,
            nonce=self.claims.nonce,
            measurements=self.claims.event_log[1:],
            boot_register=self.claims.pcrs[MEASUREMENT_PCR],
            os_version=self.claims.os_version,
            security_state=SecurityState.SECURE,
            manufacturing_state=ManufacturingState.DEVICE_COMPLETE,
            security_versions={},
            issued_at=self.claims.issued_at,
            confirmation_key=self.claims.confirmation_key,
        )


def verify_tpm_evidence(unverified_evidence: bytes) -> TpmEvidence:
    """Check everything that needs no stored state; raise `FormatError` or `AppraisalError`."""
    claims = verify_tpm_envelope(unverified_evidence)
    verify_quote_signature(
        claims.quote, claims.quote_signature, public_key_from_device_id(claims.device_id)
    )
    quote = parse_quote(claims.quote)
    if quote.qualifying_data != claims.nonce:
        raise AppraisalError("quote_nonce_mismatch", "the quote is not over this evidence's nonce")
    if quote.selection != QUOTE_SELECTION:
        raise AppraisalError(
            "quote_selection_mismatch",
            f"the quote covers {quote.selection}, the policy is {QUOTE_SELECTION}",
        )
    values = selected_values(quote.selection, claims.pcrs)
    if set(claims.pcrs) != {index for _, indices in QUOTE_SELECTION for index in indices}:
        raise AppraisalError("pcr_values_mismatch", "the reported PCRs are not the quoted ones")
    if pcr_digest(values) != quote.pcr_digest:
        raise AppraisalError(
            "pcr_values_mismatch", "the reported PCR values do not hash to the quote's digest"
        )
    if replay_pcr([event.digest for event in claims.event_log]) != claims.pcrs[MEASUREMENT_PCR]:
        raise AppraisalError(
            "event_log_mismatch", f"the event log does not replay to PCR {MEASUREMENT_PCR}"
        )
    if not claims.event_log or claims.event_log[0].stage != BOOT_EVENT:
        raise AppraisalError("event_log_mismatch", "the event log does not start with the boot")
    return TpmEvidence(
        claims=claims,
        quote=quote,
        state=_state(quote.clock, claims.event_log[0].digest),
    )


def check_counters(previous: TpmState | None, current: TpmState) -> None:
    """Refuse a TPM whose clock or counters went back, or that was reset without a reboot.

    A reboot raises the reset counter and starts a new event log with a new boot event.
    A reset counter that moved while the boot event stayed is a TPM reset behind the
    running OS (PCRs emptied, ready to be filled with good values): refused. So is a new
    boot event without a TPM reset. Within one boot the clock only goes forward; across a
    reset it may go back by what the TPM had not yet saved to NV (a power loss), so there
    only the reset counter must rise.
    """
    if previous is None:
        return
    if current.reset_count < previous.reset_count:
        raise AppraisalError(
            "tpm_counter_rewound",
            f"the reset counter went from {previous.reset_count} to {current.reset_count}",
        )
    if current.reset_count == previous.reset_count:
        if current.clock < previous.clock:
            raise AppraisalError(
                "tpm_clock_rewound",
                f"the TPM clock went from {previous.clock} to {current.clock} within one boot",
            )
        if current.restart_count < previous.restart_count:
            raise AppraisalError(
                "tpm_counter_rewound",
                f"the restart counter went from {previous.restart_count} to "
                f"{current.restart_count}",
            )
        if current.boot_event != previous.boot_event:
            raise AppraisalError(
                "reboot_without_tpm_reset", "a new boot event, but the TPM was not reset"
            )
    elif current.boot_event == previous.boot_event:
        raise AppraisalError(
            "tpm_reset_without_reboot",
            f"the reset counter moved to {current.reset_count} but the host did not reboot",
        )


def _state(clock: ClockInfo, boot_event: bytes) -> TpmState:
    return TpmState(
        clock=clock.clock,
        reset_count=clock.reset_count,
        restart_count=clock.restart_count,
        boot_event=boot_event,
    )
