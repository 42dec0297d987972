"""`sphere device-group deployment …`: deploy images to a group, staged, pause and resume."""

from __future__ import annotations

import uuid
from typing import Annotated, Final

import typer

from opensphere.api import schemas
from opensphere.cli.common import (
    ProfileOption,
    TenantOption,
    resolve_device_group,
    resolve_tenant,
    signed_in_client,
)
from opensphere.cli.output import OutputFormat, OutputOption, emit

COLUMNS: Final = ("id", "state", "rollout_percentage", "image_ids", "created_at", "created_by")

deployment_app = typer.Typer(
    help="Deployments: assign images to a device group, with staged rollout.",
    no_args_is_help=True,
)
GroupOption = Annotated[
    str, typer.Option("--device-group", "-g", help="device group GUID or 'Product/Group'")
]
DeploymentArgument = Annotated[uuid.UUID, typer.Argument(help="the deployment's GUID")]


@deployment_app.command("create")
def deployment_create(
    device_group: GroupOption,
    images: Annotated[list[uuid.UUID], typer.Option("--images", "-i", help="image IDs")],
    percentage: Annotated[
        int, typer.Option("--percentage", min=1, max=100, help="share of the group that takes it")
    ] = 100,
    failure_threshold: Annotated[
        int,
        typer.Option(min=1, max=100, help="halt when more than this % of outcomes failed"),
    ] = 20,
    min_reports: Annotated[
        int, typer.Option(min=1, help="outcomes needed before the halt rule applies")
    ] = 10,
    paused: Annotated[bool, typer.Option("--paused", help="create it paused")] = False,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Deploy images to a device group (Contributor), replacing its current deployment."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        group_id = resolve_device_group(client, tenant_id, device_group)
        body = schemas.DeploymentCreate(
            image_ids=images,
            rollout_percentage=percentage,
            failure_threshold=failure_threshold,
            min_reports=min_reports,
            paused=paused,
        )
        emit(client.create_deployment(tenant_id, group_id, body), output, COLUMNS)


@deployment_app.command("list")
def deployment_list(
    device_group: GroupOption,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """The group's deployments, oldest first."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        group_id = resolve_device_group(client, tenant_id, device_group)
        emit(list(client.deployments(tenant_id, group_id)), output, COLUMNS)


@deployment_app.command("show")
def deployment_show(
    deployment_id: DeploymentArgument,
    device_group: GroupOption,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """A deployment, with how many devices are in each update state."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        group_id = resolve_device_group(client, tenant_id, device_group)
        emit(client.deployment(tenant_id, group_id, deployment_id), output, COLUMNS)


def _update(
    deployment_id: uuid.UUID,
    device_group: str,
    body: schemas.DeploymentUpdate,
    tenant: str | None,
    profile: str | None,
    output: OutputFormat,
) -> None:
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        group_id = resolve_device_group(client, tenant_id, device_group)
        emit(client.update_deployment(tenant_id, group_id, deployment_id, body), output, COLUMNS)


@deployment_app.command("pause")
def deployment_pause(
    deployment_id: DeploymentArgument,
    device_group: GroupOption,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Hold the rollout: devices that have not installed it yet wait (Contributor)."""
    body = schemas.DeploymentUpdate(paused=True)
    _update(deployment_id, device_group, body, tenant, profile, output)


@deployment_app.command("resume")
def deployment_resume(
    deployment_id: DeploymentArgument,
    device_group: GroupOption,
    percentage: Annotated[
        int | None, typer.Option("--percentage", min=1, max=100, help="new rollout share")
    ] = None,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Resume a paused or halted rollout, optionally at another percentage (Contributor)."""
    body = schemas.DeploymentUpdate(paused=False, rollout_percentage=percentage)
    _update(deployment_id, device_group, body, tenant, profile, output)
