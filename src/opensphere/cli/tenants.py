"""`sphere tenant …`, `sphere role …` and `sphere audit …`."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from opensphere.api.schemas import Role
from opensphere.cli.common import ProfileOption, TenantOption, resolve_tenant, signed_in_client
from opensphere.cli.config import Profiles
from opensphere.cli.output import OutputFormat, OutputOption, console, emit

TENANT_COLUMNS = ("id", "name", "role", "created_at")
ROLE_COLUMNS = ("user_name", "role", "user_id", "created_at")
AUDIT_COLUMNS = ("at", "actor_name", "action", "target_type", "target_id", "result", "error_code")

tenant_app = typer.Typer(help="Tenants: create, list, select, show, update.", no_args_is_help=True)
role_app = typer.Typer(help="Users' roles in a tenant: add, list, remove.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log of every change.", no_args_is_help=True)


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="the tenant's name (1-50 characters)")],
    admin: Annotated[
        str | None, typer.Option("--admin", help="user made its first Administrator")
    ] = None,
    select: Annotated[bool, typer.Option(help="select the new tenant")] = True,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Create a tenant (operator only). Tenants cannot be deleted."""
    with signed_in_client(profile) as client:
        tenant = client.create_tenant(name, admin)
    if select:
        _select(profile, str(tenant.id), tenant.name)
    emit(tenant, output, TENANT_COLUMNS)


@tenant_app.command("list")
def tenant_list(profile: ProfileOption = None, output: OutputOption = OutputFormat.TABLE) -> None:
    """The tenants you hold a role in."""
    with signed_in_client(profile) as client:
        emit(list(client.tenants()), output, TENANT_COLUMNS)


def _select(profile: str | None, tenant_id: str, tenant_name: str) -> None:
    profiles = Profiles.load()
    active = profiles.active(profile)
    active.tenant_id = tenant_id
    active.tenant_name = tenant_name
    profiles.save()


@tenant_app.command("select")
def tenant_select(
    tenant: Annotated[str, typer.Argument(help="tenant name or GUID")],
    profile: ProfileOption = None,
) -> None:
    """Make a tenant the default for the commands that follow."""
    with signed_in_client(profile) as client:
        chosen = client.tenant(resolve_tenant(client, tenant, profile))
    _select(profile, str(chosen.id), chosen.name)
    console.print(f"Selected tenant {chosen.name} ({chosen.id}).")


@tenant_app.command("show")
def tenant_show(
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Show a tenant (the selected one by default)."""
    with signed_in_client(profile) as client:
        emit(client.tenant(resolve_tenant(client, tenant, profile)), output, TENANT_COLUMNS)


@tenant_app.command("update")
def tenant_update(
    new_name: Annotated[str, typer.Option("--new-name", help="the tenant's new name")],
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Rename a tenant (Administrator)."""
    with signed_in_client(profile) as client:
        updated = client.rename_tenant(resolve_tenant(client, tenant, profile), new_name)
    profiles = Profiles.load()
    if profiles.active(profile).tenant_id == str(updated.id):
        _select(profile, str(updated.id), updated.name)
    emit(updated, output, TENANT_COLUMNS)


@role_app.command("add")
def role_add(
    user: Annotated[str, typer.Option(help="user name or e-mail address")],
    role: Annotated[Role, typer.Option(help="Administrator, Contributor or Reader")],
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Give a user a role in the tenant (Administrator); replaces the role they had."""
    with signed_in_client(profile) as client:
        emit(
            client.assign_role(resolve_tenant(client, tenant, profile), user, role),
            output,
            ROLE_COLUMNS,
        )


@role_app.command("list")
def role_list(
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Users and their roles in the tenant."""
    with signed_in_client(profile) as client:
        emit(list(client.roles(resolve_tenant(client, tenant, profile))), output, ROLE_COLUMNS)


@role_app.command("remove")
def role_remove(
    user: Annotated[str, typer.Option(help="user name or e-mail address")],
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Take a user's role in the tenant away (Administrator)."""
    with signed_in_client(profile) as client:
        emit(
            client.remove_role(resolve_tenant(client, tenant, profile), user), output, ROLE_COLUMNS
        )


@audit_app.command("list")
def audit_list(
    tenant: TenantOption = None,
    service: Annotated[
        bool, typer.Option("--service", help="changes outside tenants (operator)")
    ] = False,
    action: Annotated[
        str | None, typer.Option(help="only this action, e.g. product.create")
    ] = None,
    since: Annotated[dt.datetime | None, typer.Option(help="only events from this time")] = None,
    until: Annotated[dt.datetime | None, typer.Option(help="only events before this time")] = None,
    max_items: Annotated[int, typer.Option("--max", help="at most this many events")] = 100,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Who changed what, newest first."""
    with signed_in_client(profile) as client:
        tenant_id = None if service else resolve_tenant(client, tenant, profile)
        events = list(
            client.audit(
                tenant_id,
                limit=max_items,
                action=action,
                since=since.isoformat() if since else None,
                until=until.isoformat() if until else None,
            )
        )
    emit(events, output, AUDIT_COLUMNS)
