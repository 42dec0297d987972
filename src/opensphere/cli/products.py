"""`sphere product …` and `sphere device-group …`."""

from __future__ import annotations

from typing import Annotated

import typer

from opensphere.api import schemas
from opensphere.api.schemas import OsFeed, UpdatePolicy
from opensphere.cli.common import (
    ProfileOption,
    TenantOption,
    resolve_device_group,
    resolve_product,
    resolve_tenant,
    signed_in_client,
)
from opensphere.cli.output import OutputFormat, OutputOption, emit

PRODUCT_COLUMNS = ("id", "name", "description")
GROUP_COLUMNS = ("id", "name", "os_feed", "update_policy", "allow_crash_dumps", "description")

product_app = typer.Typer(
    help="Products: create, list, show, update, delete.", no_args_is_help=True
)
group_app = typer.Typer(
    help="Device groups: create, list, show, update, delete.", no_args_is_help=True
)

ProductArgument = Annotated[str, typer.Argument(help="product name or GUID")]
GroupArgument = Annotated[
    str, typer.Argument(help="device group GUID, 'Product/Group', or a name with --product")
]
ProductOption = Annotated[str | None, typer.Option("--product", "-p", help="product name or GUID")]


@product_app.command("create")
def product_create(
    name: Annotated[str, typer.Option("--name", "-n", help="unique in the tenant, 1-50 chars")],
    description: Annotated[str, typer.Option(help="up to 100 characters")] = "",
    default_device_groups: Annotated[
        bool,
        typer.Option(
            "--default-device-groups/--no-default-device-groups",
            help="create the five default device groups",
        ),
    ] = True,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Create a product (Contributor)."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        product = client.create_product(
            tenant_id,
            schemas.ProductCreate(
                name=name, description=description, create_default_groups=default_device_groups
            ),
        )
    emit(product, output, PRODUCT_COLUMNS)


@product_app.command("list")
def product_list(
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """The tenant's products."""
    with signed_in_client(profile) as client:
        emit(
            list(client.products(resolve_tenant(client, tenant, profile))), output, PRODUCT_COLUMNS
        )


@product_app.command("show")
def product_show(
    product: ProductArgument,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Show a product."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        emit(
            client.product(tenant_id, resolve_product(client, tenant_id, product)),
            output,
            PRODUCT_COLUMNS,
        )


@product_app.command("update")
def product_update(
    product: ProductArgument,
    new_name: Annotated[str | None, typer.Option("--new-name", help="rename the product")] = None,
    description: Annotated[str | None, typer.Option(help="new description")] = None,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Rename a product or change its description (Contributor)."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        updated = client.update_product(
            tenant_id,
            resolve_product(client, tenant_id, product),
            schemas.ProductUpdate(name=new_name, description=description),
        )
    emit(updated, output, PRODUCT_COLUMNS)


@product_app.command("delete")
def product_delete(
    product: ProductArgument,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Delete a product and its device groups (Administrator)."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        emit(
            client.delete_product(tenant_id, resolve_product(client, tenant_id, product)),
            output,
            PRODUCT_COLUMNS,
        )


@product_app.command("create-defaults")
def product_create_defaults(
    product: ProductArgument,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Add whichever of the five default device groups the product lacks."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        groups = client.create_default_groups(
            tenant_id, resolve_product(client, tenant_id, product)
        )
    emit(groups, output, GROUP_COLUMNS)


@group_app.command("create")
def group_create(
    product: Annotated[str, typer.Option("--product", "-p", help="product name or GUID")],
    name: Annotated[str, typer.Option("--name", "-n", help="unique in the product, 1-50 chars")],
    description: Annotated[str, typer.Option(help="up to 100 characters")] = "",
    os_feed: Annotated[OsFeed, typer.Option(help="Retail or RetailEval")] = OsFeed.RETAIL,
    update_policy: Annotated[
        UpdatePolicy,
        typer.Option(
            "--update-policy",
            "--application-update",
            "-a",
            help="UpdateAll, No3rdPartyAppUpdates or NoUpdates",
        ),
    ] = UpdatePolicy.UPDATE_ALL,
    allow_crash_dumps: Annotated[
        bool, typer.Option("--allow-crash-dumps-collection/--no-crash-dumps")
    ] = False,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Create a device group in a product (Contributor)."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        group = client.create_device_group(
            tenant_id,
            schemas.DeviceGroupCreate(
                product_id=resolve_product(client, tenant_id, product),
                name=name,
                description=description,
                os_feed=os_feed,
                update_policy=update_policy,
                allow_crash_dumps=allow_crash_dumps,
            ),
        )
    emit(group, output, GROUP_COLUMNS)


@group_app.command("list")
def group_list(
    product: ProductOption = None,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """The tenant's device groups, or one product's."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        product_id = resolve_product(client, tenant_id, product) if product else None
        emit(list(client.device_groups(tenant_id, product_id=product_id)), output, GROUP_COLUMNS)


@group_app.command("show")
def group_show(
    device_group: GroupArgument,
    product: ProductOption = None,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Show a device group."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        group_id = resolve_device_group(client, tenant_id, device_group, product)
        emit(client.device_group(tenant_id, group_id), output, GROUP_COLUMNS)


@group_app.command("update")
def group_update(
    device_group: GroupArgument,
    product: ProductOption = None,
    new_name: Annotated[str | None, typer.Option("--new-name")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    os_feed: Annotated[OsFeed | None, typer.Option()] = None,
    update_policy: Annotated[
        UpdatePolicy | None, typer.Option("--update-policy", "--application-update", "-a")
    ] = None,
    allow_crash_dumps: Annotated[
        bool | None, typer.Option("--allow-crash-dumps-collection/--no-crash-dumps")
    ] = None,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Change a device group's name, feed, update policy or crash-dump opt-in (Contributor)."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        group_id = resolve_device_group(client, tenant_id, device_group, product)
        updated = client.update_device_group(
            tenant_id,
            group_id,
            schemas.DeviceGroupUpdate(
                name=new_name,
                description=description,
                os_feed=os_feed,
                update_policy=update_policy,
                allow_crash_dumps=allow_crash_dumps,
            ),
        )
    emit(updated, output, GROUP_COLUMNS)


@group_app.command("delete")
def group_delete(
    device_group: GroupArgument,
    product: ProductOption = None,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Delete a device group (Administrator)."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        group_id = resolve_device_group(client, tenant_id, device_group, product)
        emit(client.delete_device_group(tenant_id, group_id), output, GROUP_COLUMNS)
