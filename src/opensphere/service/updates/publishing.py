"""What each device group is offered, published as the group's TUF role.

A group's role (`group-<uuid>`, see `opensphere.updates.repository`) lists everything its devices
should run, after the group's update policy (reference §4.5):

- the OS images of the current release on the group's feed (Retail or RetailEval), named
  `os-<image ID>.imagepackage`, unless the policy is NoUpdates;
- the images of the group's current deployment, named `app-<image ID>.imagepackage`, each with
  `custom.rollout` (deployment ID, percentage, paused), only under UpdateAll.

Feeds are folded into each group's role rather than published as separate `feed-*` roles, so a
device reads one manifest and the policy is applied by the service, where it is set; the price
is that publishing an OS release re-signs every group on that feed, which happens rarely.
Devices with the appDevelopment capability skip the `app-` targets themselves (the device
knows its capabilities; the service publishes per group, not per device).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from opensphere.api import schemas
from opensphere.api.schemas import DeploymentState, OsFeed, UpdatePolicy
from opensphere.service.keystore import KeyStore
from opensphere.service.storage.models import (
    Deployment,
    DeviceGroup,
    DeviceUpdateStatus,
    Image,
    OsRelease,
    OsReleaseImage,
    TufRepository,
    UpdateStateTally,
)
from opensphere.service.updates.tuf_store import lock_repository, save
from opensphere.updates.repository import Channel, ImageTarget, publish_targets, remove_channel
from opensphere.updates.rollout import Rollout


def current_release(session: Session, feed: OsFeed) -> OsRelease | None:
    """The release most recently published to `feed` (Retail releases count for RetailEval)."""
    column = OsRelease.retail_at if feed == OsFeed.RETAIL else OsRelease.retail_eval_at
    return session.scalar(
        select(OsRelease)
        .where(column.is_not(None))
        .order_by(column.desc(), OsRelease.id.desc())
        .limit(1)
    )


def current_deployment(session: Session, group_id: uuid.UUID) -> Deployment | None:
    return session.scalar(
        select(Deployment)
        .where(
            Deployment.device_group_id == group_id,
            Deployment.state != DeploymentState.SUPERSEDED.value,
        )
        .order_by(Deployment.id.desc())
        .limit(1)
    )


def group_targets(session: Session, group: DeviceGroup) -> dict[str, ImageTarget]:
    """The group's targets under its update policy; see the module docstring."""
    policy = UpdatePolicy(group.update_policy)
    if policy == UpdatePolicy.NO_UPDATES:
        return {}
    targets: dict[str, ImageTarget] = {}
    release = current_release(session, OsFeed(group.os_feed))
    if release is not None:
        for os_image in session.scalars(
            select(OsReleaseImage).where(OsReleaseImage.os_release_id == release.id)
        ):
            targets[f"os-{os_image.image_id}.imagepackage"] = ImageTarget(
                length=os_image.length,
                sha256=os_image.sha256,
                image_id=os_image.image_id,
                component_id=os_image.component_id,
                image_type=os_image.image_type,
                security_version=os_image.security_version,
            )
    deployment = current_deployment(session, group.id)
    if policy == UpdatePolicy.UPDATE_ALL and deployment is not None and deployment.image_ids:
        rollout = Rollout(
            deployment_id=deployment.id,
            percentage=deployment.rollout_percentage,
            paused=deployment.state != DeploymentState.ACTIVE.value,
        )
        for image in _deployed_images(session, deployment):
            targets[f"app-{image.image_id}.imagepackage"] = ImageTarget(
                length=image.length,
                sha256=image.sha256,
                image_id=image.image_id,
                component_id=image.component_id,
                image_type=image.image_type,
                security_version=image.security_version,
                rollout=rollout,
            )
    return targets


def publish_groups(
    session: Session, keys: KeyStore, groups: Sequence[DeviceGroup], now: dt.datetime
) -> None:
    """Re-sign the roles of `groups` (all of one tenant) with what each is offered now."""
    if not groups:
        return
    locked = lock_repository(session, keys, groups[0].tenant_id, now)
    state = locked.state
    for group in groups:
        state = publish_targets(
            state,
            Channel.group(group.id),
            group_targets(session, group),
            online=locked.online,
            now=now,
        )
    save(session, locked, state, now)


def republish_published(
    session: Session, keys: KeyStore, groups: Sequence[DeviceGroup], now: dt.datetime
) -> bool:
    """Re-sign those of `groups` (one tenant's) whose role exists; the rest are published when
    a device first asks for its trust (`GET /v1/device/trust`). True if anything was."""
    if not groups:
        return False
    row = session.get(TufRepository, groups[0].tenant_id)
    if row is None:
        return False
    published = [g for g in groups if Channel.group(g.id).role in row.head["delegated"]]
    publish_groups(session, keys, published, now)
    return bool(published)


def republish_feed(
    session: Session, keys: KeyStore, feed: OsFeed, now: dt.datetime
) -> list[uuid.UUID]:
    """Re-sign every published group whose offer a change to `feed` alters; the tenants touched.

    Retail releases are in RetailEval too, so a Retail change reaches both kinds of group.
    """
    feeds = (
        [OsFeed.RETAIL.value, OsFeed.RETAIL_EVAL.value] if feed == OsFeed.RETAIL else [feed.value]
    )
    by_tenant: dict[uuid.UUID, list[DeviceGroup]] = defaultdict(list)
    for group in session.scalars(select(DeviceGroup).where(DeviceGroup.os_feed.in_(feeds))):
        by_tenant[group.tenant_id].append(group)
    return [
        tenant_id
        for tenant_id, groups in by_tenant.items()
        if republish_published(session, keys, groups, now)
    ]


def unpublish_group(session: Session, keys: KeyStore, group: DeviceGroup, now: dt.datetime) -> bool:
    """Drop a deleted group's role from its tenant's repository; True if it had one."""
    row = session.get(TufRepository, group.tenant_id)
    if row is None or Channel.group(group.id).role not in row.head["delegated"]:
        return False
    locked = lock_repository(session, keys, group.tenant_id, now)
    state = remove_channel(locked.state, Channel.group(group.id), online=locked.online, now=now)
    save(session, locked, state, now)
    return True


def status_counts(session: Session, deployment_id: uuid.UUID) -> dict[schemas.UpdateState, int]:
    """Devices per reported state for a deployment, from the tallies triggers keep (migration
    0006): a few rows however many devices report, and exact within this transaction."""
    rows = session.execute(
        select(UpdateStateTally.state, func.sum(UpdateStateTally.count))
        .where(UpdateStateTally.deployment_id == deployment_id, UpdateStateTally.count != 0)
        .group_by(UpdateStateTally.state)
    )
    return {schemas.UpdateState(state): int(count) for state, count in rows}


def deployment_out(
    row: Deployment, counts: dict[schemas.UpdateState, int] | None = None
) -> schemas.Deployment:
    return schemas.Deployment(
        id=row.id,
        tenant_id=row.tenant_id,
        device_group_id=row.device_group_id,
        image_ids=[uuid.UUID(image_id) for image_id in row.image_ids],
        state=DeploymentState(row.state),
        rollout_percentage=row.rollout_percentage,
        failure_threshold=row.failure_threshold,
        min_reports=row.min_reports,
        halt_reason=row.halt_reason,
        created_by=row.created_by_name,
        created_at=row.created_at,
        updated_at=row.updated_at,
        status_counts=counts or {},
    )


def group_deployment_out(session: Session, group_id: uuid.UUID) -> schemas.Deployment | None:
    """The group's current deployment with its counts, for `device-group show`."""
    deployment = current_deployment(session, group_id)
    if deployment is None:
        return None
    return deployment_out(deployment, status_counts(session, deployment.id))


def update_status_out(session: Session, device_id: str) -> schemas.DeviceUpdateStatus | None:
    row = session.get(DeviceUpdateStatus, device_id)
    if row is None:
        return None
    return schemas.DeviceUpdateStatus(
        deployment_id=row.deployment_id,
        state=schemas.UpdateState(row.state),
        reason=row.reason,
        installed_images=[uuid.UUID(image_id) for image_id in row.installed_images],
        os_version=row.os_version,
        sequence=row.sequence,
        reported_at=row.reported_at,
    )


def _deployed_images(session: Session, deployment: Deployment) -> list[Image]:
    wanted = [uuid.UUID(image_id) for image_id in deployment.image_ids]
    rows = session.scalars(
        select(Image).where(Image.tenant_id == deployment.tenant_id, Image.image_id.in_(wanted))
    )
    return sorted(rows, key=lambda image: wanted.index(image.image_id))
