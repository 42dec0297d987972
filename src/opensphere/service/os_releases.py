"""Known-good OS reference values and minimum security versions, registered by the operator.

Attestation compares a device's measurements with the release its evidence names, and
its security versions with the minimums: the operator retires a vulnerable OS by deleting
its release or by raising a component's minimum.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from opensphere.api import schemas
from opensphere.api.schemas import OsFeed
from opensphere.service.deps import Context
from opensphere.service.errors import ConflictError, NotFoundError
from opensphere.service.paging import DEFAULT_LIMIT, decode_continuation, make_page
from opensphere.service.storage.models import OsRelease, OsReleaseImage, SecurityVersionMinimum
from opensphere.service.tenants import Continuation, Limit
from opensphere.service.updates.publishing import republish_feed

router = APIRouter(prefix="/v1", tags=["os-releases"])

OsReleaseId = Annotated[uuid.UUID, Path(description="the OS release's GUID")]


def _out(row: OsRelease) -> schemas.OsRelease:
    return schemas.OsRelease(
        id=row.id,
        version=row.version,
        description=row.description,
        measurements=[
            schemas.ReferenceMeasurement(stage=stage, digest=digest)
            for stage, digest in row.measurements
        ],
        created_at=row.created_at,
        retail_eval_at=row.retail_eval_at,
        retail_at=row.retail_at,
    )


def release_out(row: OsRelease, session: Session) -> schemas.OsRelease:
    """The release with its OS component images (feeds: `service/updates/feeds.py`)."""
    images = session.scalars(
        select(OsReleaseImage)
        .where(OsReleaseImage.os_release_id == row.id)
        .order_by(OsReleaseImage.image_type, OsReleaseImage.image_id)
    )
    return _out(row).model_copy(
        update={
            "images": [
                schemas.OsReleaseImage.model_validate(image, from_attributes=True)
                for image in images
            ]
        }
    )


@router.post("/os-releases", status_code=201)
def register_os_release(
    body: schemas.OsReleaseCreate, context: Context, request: Request
) -> schemas.OsRelease:
    """Register an OS version's known-good measurements (operator only)."""
    with context.change("os_release.register", target_type="os_release", operator=True) as change:
        stages = [m.stage for m in body.measurements]
        if len(set(stages)) != len(stages):
            raise ConflictError("each stage may appear once", code="duplicate_stage")
        if context.session.scalar(select(OsRelease.id).where(OsRelease.version == body.version)):
            raise ConflictError(
                f"OS version {body.version!r} is already registered", code="name_conflict"
            )
        row = OsRelease(
            version=body.version,
            description=body.description,
            measurements=[[m.stage, m.digest] for m in body.measurements],
            created_at=context.now,
        )
        context.session.add(row)
        context.session.flush()
        change.target_id = str(row.id)
        change.details = {"version": body.version, "stages": stages}
    request.app.state.references.invalidate()
    return _out(row)


@router.get("/os-releases")
def list_os_releases(
    context: Context, limit: Limit = DEFAULT_LIMIT, continuation_token: Continuation = None
) -> schemas.Page[schemas.OsRelease]:
    """The OS versions devices may run (any signed-in user)."""
    after = decode_continuation(continuation_token)
    query = select(OsRelease)
    if after is not None:
        query = query.where(OsRelease.id > after)
    rows = context.session.scalars(query.order_by(OsRelease.id).limit(limit + 1)).all()
    return make_page(rows, limit, key=lambda row: row.id, out=_out)


@router.delete("/os-releases/{os_release_id}")
def delete_os_release(
    os_release_id: OsReleaseId, context: Context, request: Request
) -> schemas.OsRelease:
    """Stop accepting an OS version: its devices fail their next attestation (operator only)."""
    with context.change(
        "os_release.delete",
        target_type="os_release",
        operator=True,
        target_id=str(os_release_id),
    ) as change:
        row = context.session.get(OsRelease, os_release_id)
        if row is None:
            raise NotFoundError(
                f"there is no OS release {os_release_id}", code="os_release_not_found"
            )
        result = _out(row)
        context.session.execute(
            delete(OsReleaseImage).where(OsReleaseImage.os_release_id == row.id)
        )
        context.session.delete(row)
        context.session.flush()
        tenants = []
        if row.retail_eval_at is not None:
            feed = OsFeed.RETAIL if row.retail_at is not None else OsFeed.RETAIL_EVAL
            tenants = republish_feed(context.session, request.app.state.keys, feed, context.now)
        change.details = {"version": row.version}
    request.app.state.references.invalidate()
    for tenant_id in tenants:
        request.app.state.tuf.invalidate(tenant_id)
    return result


@router.get("/minimum-security-versions")
def show_minimum_security_versions(context: Context) -> schemas.SecurityVersionMinimums:
    """The lowest security version accepted per component (any signed-in user)."""
    rows = context.session.scalars(
        select(SecurityVersionMinimum).order_by(SecurityVersionMinimum.component)
    ).all()
    return schemas.SecurityVersionMinimums(minimums={row.component: row.minimum for row in rows})


@router.put("/minimum-security-versions")
def set_minimum_security_versions(
    body: schemas.SecurityVersionMinimums, context: Context, request: Request
) -> schemas.SecurityVersionMinimums:
    """Replace the minimums (operator only). Lowering one lets older software back in."""
    with context.change(
        "minimum_security_versions.set", target_type="security_policy", operator=True
    ) as change:
        context.session.execute(delete(SecurityVersionMinimum))
        context.session.add_all(
            SecurityVersionMinimum(component=component, minimum=minimum, updated_at=context.now)
            for component, minimum in body.minimums.items()
        )
        change.details = {"minimums": dict(body.minimums)}
    request.app.state.references.invalidate()
    return body
