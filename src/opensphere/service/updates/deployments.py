"""Deployments: a set of images assigned to a device group, replacing the previous one.

One row per deployment, never one per device. Creating, pausing, resuming or widening one
re-signs the group's TUF role at once, in the same transaction, so what devices fetch always
matches what the API shows. Staged rollout and automatic halting follow
`opensphere.updates.rollout`.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request
from sqlalchemy import select, update

from opensphere.api import schemas
from opensphere.api.schemas import DeploymentState, Role
from opensphere.service.deps import Context
from opensphere.service.errors import ConflictError, InvalidRequestError, NotFoundError
from opensphere.service.paging import DEFAULT_LIMIT, decode_continuation, make_page
from opensphere.service.products import DeviceGroupId, get_device_group
from opensphere.service.storage.models import Deployment, Image
from opensphere.service.tenants import Continuation, Limit, TenantId
from opensphere.service.updates.publishing import deployment_out, publish_groups, status_counts

router = APIRouter(
    prefix="/v1/tenants/{tenant_id}/device-groups/{device_group_id}/deployments",
    tags=["deployments"],
)

DeploymentId = Annotated[uuid.UUID, Path(description="the deployment's GUID")]


def _check_images(context: Context, tenant_id: uuid.UUID, image_ids: list[uuid.UUID]) -> None:
    """Every image is this tenant's, each listed once, each component at most once."""
    if len(set(image_ids)) != len(image_ids):
        raise InvalidRequestError("an image is listed twice", code="duplicate_image")
    rows = context.session.scalars(
        select(Image).where(Image.tenant_id == tenant_id, Image.image_id.in_(image_ids))
    ).all()
    missing = set(image_ids) - {row.image_id for row in rows}
    if missing:
        raise InvalidRequestError(
            f"no image {sorted(map(str, missing))[0]} in this tenant: upload it first",
            code="image_not_found",
        )
    components = [row.component_id for row in rows]
    if len(set(components)) != len(components):
        raise InvalidRequestError(
            "two images of the same component: a deployment holds one image per component",
            code="duplicate_component",
        )


@router.post("", status_code=201)
def create_deployment(
    tenant_id: TenantId,
    device_group_id: DeviceGroupId,
    body: schemas.DeploymentCreate,
    context: Context,
    request: Request,
) -> schemas.Deployment:
    """Deploy images to a device group (Contributor), replacing its current deployment."""
    with context.change(
        "deployment.create",
        tenant_id=tenant_id,
        required=Role.CONTRIBUTOR,
        target_type="deployment",
    ) as change:
        group = get_device_group(context.session, tenant_id, device_group_id)
        _check_images(context, tenant_id, body.image_ids)
        superseded = context.session.execute(
            update(Deployment)
            .where(
                Deployment.device_group_id == group.id,
                Deployment.state != DeploymentState.SUPERSEDED.value,
            )
            .values(state=DeploymentState.SUPERSEDED.value, updated_at=context.now)
            .returning(Deployment.id)
        ).scalars()
        replaced = [str(deployment_id) for deployment_id in superseded]
        row = Deployment(
            tenant_id=tenant_id,
            device_group_id=group.id,
            image_ids=[str(image_id) for image_id in body.image_ids],
            state=(DeploymentState.PAUSED if body.paused else DeploymentState.ACTIVE).value,
            rollout_percentage=body.rollout_percentage,
            failure_threshold=body.failure_threshold,
            min_reports=body.min_reports,
            halt_reason=None,
            created_by=context.principal.user_id,
            created_by_name=context.principal.user_name,
            created_at=context.now,
            updated_at=context.now,
        )
        context.session.add(row)
        context.session.flush()
        publish_groups(context.session, request.app.state.keys, [group], context.now)
        change.target_id = str(row.id)
        change.details = {
            "device_group_id": str(group.id),
            "image_ids": row.image_ids,
            "rollout_percentage": row.rollout_percentage,
            "replaced": replaced,
        }
    request.app.state.tuf.invalidate(tenant_id)
    return deployment_out(row)


@router.get("")
def list_deployments(
    tenant_id: TenantId,
    device_group_id: DeviceGroupId,
    context: Context,
    limit: Limit = DEFAULT_LIMIT,
    continuation_token: Continuation = None,
) -> schemas.Page[schemas.Deployment]:
    """The group's deployments, oldest first; the last one not Superseded is current."""
    context.authorize(tenant_id, Role.READER)
    get_device_group(context.session, tenant_id, device_group_id)
    after = decode_continuation(continuation_token)
    query = select(Deployment).where(Deployment.device_group_id == device_group_id)
    if after is not None:
        query = query.where(Deployment.id > after)
    rows = context.session.scalars(query.order_by(Deployment.id).limit(limit + 1)).all()
    return make_page(rows, limit, key=lambda row: row.id, out=deployment_out)


def _get_deployment(
    context: Context, tenant_id: uuid.UUID, group_id: uuid.UUID, deployment_id: uuid.UUID
) -> Deployment:
    row = context.session.get(Deployment, deployment_id)
    if row is None or row.tenant_id != tenant_id or row.device_group_id != group_id:
        raise NotFoundError(
            f"there is no deployment {deployment_id} in this device group",
            code="deployment_not_found",
        )
    return row


@router.get("/{deployment_id}")
def show_deployment(
    tenant_id: TenantId,
    device_group_id: DeviceGroupId,
    deployment_id: DeploymentId,
    context: Context,
) -> schemas.Deployment:
    """A deployment, with how many devices last reported each update state for it."""
    context.authorize(tenant_id, Role.READER)
    row = _get_deployment(context, tenant_id, device_group_id, deployment_id)
    return deployment_out(row, status_counts(context.session, row.id))


@router.patch("/{deployment_id}")
def update_deployment(
    tenant_id: TenantId,
    device_group_id: DeviceGroupId,
    deployment_id: DeploymentId,
    body: schemas.DeploymentUpdate,
    context: Context,
    request: Request,
) -> schemas.Deployment:
    """Pause, resume (also after a halt), widen or narrow the rollout (Contributor)."""
    with context.change(
        "deployment.update",
        tenant_id=tenant_id,
        required=Role.CONTRIBUTOR,
        target_type="deployment",
        target_id=str(deployment_id),
    ) as change:
        row = _get_deployment(context, tenant_id, device_group_id, deployment_id)
        if row.state == DeploymentState.SUPERSEDED.value:
            raise ConflictError(
                "a newer deployment replaced this one; create a new deployment instead",
                code="deployment_superseded",
            )
        changes = body.model_dump(exclude_none=True)
        if body.rollout_percentage is not None:
            row.rollout_percentage = body.rollout_percentage
        if body.failure_threshold is not None:
            row.failure_threshold = body.failure_threshold
        if body.paused is not None:
            row.state = (DeploymentState.PAUSED if body.paused else DeploymentState.ACTIVE).value
            row.halt_reason = None
        row.updated_at = context.now
        group = get_device_group(context.session, tenant_id, device_group_id)
        publish_groups(context.session, request.app.state.keys, [group], context.now)
        change.details = changes
    request.app.state.tuf.invalidate(tenant_id)
    return deployment_out(row, status_counts(context.session, row.id))
