"""The TPM part of the attestation hot path: the device's bound key and TPM counters.

Runs inside the evidence endpoint's one write transaction, after the nonce is used up,
so two quotes from one TPM cannot both pass against the same last state.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Connection, Table, bindparam, select, update

from opensphere.service.appraisal import AppraisalError
from opensphere.service.storage.models import TpmDevice
from opensphere.service.tpm_appraisal import TpmEvidence, TpmState, check_counters

_TPM_DEVICES = cast(Table, TpmDevice.__table__)
_LOAD = select(
    _TPM_DEVICES.c.clock,
    _TPM_DEVICES.c.reset_count,
    _TPM_DEVICES.c.restart_count,
    _TPM_DEVICES.c.boot_event,
).where(_TPM_DEVICES.c.device_id == bindparam("p_device_id"))
_SAVE = (
    update(_TPM_DEVICES)
    .where(_TPM_DEVICES.c.device_id == bindparam("p_device_id"))
    .values(
        clock=bindparam("p_clock"),
        reset_count=bindparam("p_reset_count"),
        restart_count=bindparam("p_restart_count"),
        boot_event=bindparam("p_boot_event"),
    )
)


def advance_tpm_state(connection: Connection, evidence: TpmEvidence) -> None:
    """Check the quote against the TPM's last state and store the new one.

    The row exists only for a device claimed by credential activation, and its key is
    the device ID's: a row means this attestation key was proven to live in a genuine
    TPM. Evidence from any other key (an emulated device, an unbound key) has no row.
    """
    row = connection.execute(_LOAD, {"p_device_id": evidence.claims.device_id}).first()
    if row is None:
        raise AppraisalError(
            "unbound_attestation_key",
            "the key is not an attestation key bound to a TPM's EK at claim time",
        )
    previous = (
        None
        if row.reset_count is None
        else TpmState(
            clock=row.clock,
            reset_count=row.reset_count,
            restart_count=row.restart_count,
            boot_event=row.boot_event,
        )
    )
    check_counters(previous, evidence.state)
    state = evidence.state
    connection.execute(
        _SAVE,
        {
            "p_device_id": evidence.claims.device_id,
            "p_clock": state.clock,
            "p_reset_count": state.reset_count,
            "p_restart_count": state.restart_count,
            "p_boot_event": state.boot_event,
        },
    )
