"""Per-device update status: each device's latest report, one row per device, updated in place.

A report names the deployment it is about (from its targets' `custom.rollout`), the state, a
reason when it failed, and what the device runs. Reports carry a growing `sequence`, so a
retried or late report never overwrites a newer one: sending the same report twice is
harmless, and a device may send only its latest state after being offline.

A failure report is when the halt rule can trip, so only then does the service count the
deployment's outcomes (one GROUP BY over the status index) and, past the threshold, halt it
and re-publish the group's role with the rollout paused.
"""

from __future__ import annotations

import datetime as dt
import logging

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session

from opensphere.api import schemas
from opensphere.api.schemas import DeploymentState, UpdateState
from opensphere.service.device_auth import DeviceCaller
from opensphere.service.errors import InvalidRequestError
from opensphere.service.storage.models import (
    AuditEvent,
    Deployment,
    DeviceGroup,
    DeviceUpdateStatus,
)
from opensphere.service.updates.publishing import publish_groups, status_counts, update_status_out
from opensphere.updates.rollout import should_halt

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/device", tags=["device"])


@router.post("/update-status")
def report_update_status(
    body: schemas.UpdateStatusReport, caller: DeviceCaller, request: Request
) -> schemas.DeviceUpdateStatus:
    """Record where the calling device is in an update (device credential); newest wins."""
    session = caller.session
    device = caller.device
    deployment = None
    if body.deployment_id is not None:
        deployment = session.get(Deployment, body.deployment_id)
        if deployment is None or deployment.tenant_id != device.tenant_id:
            raise InvalidRequestError(
                "no such deployment in the device's tenant", code="unknown_deployment"
            )
    halted = False
    row = session.get(DeviceUpdateStatus, device.device_id)
    if row is None:
        row = DeviceUpdateStatus(device_id=device.device_id, sequence=-1)
        session.add(row)
    if body.sequence >= row.sequence:
        row.tenant_id = device.tenant_id
        row.deployment_id = body.deployment_id
        row.state = body.state.value
        row.reason = body.reason
        row.installed_images = [str(image_id) for image_id in body.installed_images]
        row.os_version = body.os_version
        row.sequence = body.sequence
        row.reported_at = caller.now
        session.flush()
        if deployment is not None and body.state == UpdateState.FAILED:
            halted = _halt_if_failing(request, session, deployment, caller.now)
    session.commit()
    if halted:
        request.app.state.tuf.invalidate(device.tenant_id)
    result = update_status_out(session, device.device_id)
    assert result is not None
    return result


def _halt_if_failing(
    request: Request, session: Session, deployment: Deployment, now: dt.datetime
) -> bool:
    """Halt an active deployment whose failure rate passed its threshold; True if it did."""
    if deployment.state != DeploymentState.ACTIVE.value:
        return False
    counts = status_counts(session, deployment.id)
    installed = counts.get(UpdateState.INSTALLED, 0)
    failed = counts.get(UpdateState.FAILED, 0)
    if not should_halt(
        installed=installed,
        failed=failed,
        threshold=deployment.failure_threshold,
        min_reports=deployment.min_reports,
    ):
        return False
    reason = (
        f"{failed} of {installed + failed} devices failed to install, over the "
        f"{deployment.failure_threshold}% threshold"
    )
    deployment.state = DeploymentState.HALTED.value
    deployment.halt_reason = reason
    deployment.updated_at = now
    group = session.get(DeviceGroup, deployment.device_group_id)
    assert group is not None
    publish_groups(session, request.app.state.keys, [group], now)
    session.add(
        AuditEvent(
            tenant_id=deployment.tenant_id,
            actor_id=None,
            actor_name="service",
            action="deployment.halt",
            target_type="deployment",
            target_id=str(deployment.id),
            result="success",
            error_code=None,
            request_id=request.state.request_id,
            at=now,
            details={"installed": installed, "failed": failed, "reason": reason},
        )
    )
    log.warning("deployment %s halted: %s", deployment.id, reason)
    return True
