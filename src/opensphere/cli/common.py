"""What every management command needs: a signed-in client and names resolved to GUIDs."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from opensphere.cli.config import Profiles
from opensphere.cli.errors import CliError
from opensphere.client import Client

TenantOption = Annotated[
    str | None,
    typer.Option("--tenant", "-t", help="tenant name or GUID (default: the selected one)"),
]
ProfileOption = Annotated[
    str | None,
    typer.Option("--profile", help="sign-in profile to use", envvar="OPENSPHERE_PROFILE"),
]


def signed_in_client(profile: str | None = None) -> Client:
    active = Profiles.load().active(profile)
    return Client(active.url, active.token)


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def resolve_tenant(client: Client, value: str | None, profile: str | None = None) -> uuid.UUID:
    if value is None:
        selected = Profiles.load().selected_tenant(profile)
        if selected is None:
            raise CliError("no tenant selected: pass --tenant or run 'sphere tenant select NAME'")
        return selected
    as_id = _as_uuid(value)
    if as_id is not None:
        return as_id
    matches = [t for t in client.tenants() if t.name.casefold() == value.casefold()]
    if not matches:
        raise CliError(f"you have no tenant named {value!r}: see 'sphere tenant list'")
    return matches[0].id


def resolve_product(client: Client, tenant_id: uuid.UUID, value: str) -> uuid.UUID:
    as_id = _as_uuid(value)
    if as_id is not None:
        return as_id
    matches = list(client.products(tenant_id, name=value))
    if not matches:
        raise CliError(f"there is no product named {value!r}: see 'sphere product list'")
    return matches[0].id


def resolve_device_group(
    client: Client, tenant_id: uuid.UUID, value: str, product: str | None = None
) -> uuid.UUID:
    """A GUID, 'Product/Group', or a group name with --product."""
    as_id = _as_uuid(value)
    if as_id is not None:
        return as_id
    if "/" in value and product is None:
        product, value = value.split("/", 1)
    if product is None:
        raise CliError(
            f"name the device group as 'Product/{value}', give --product, or use its GUID"
        )
    product_id = resolve_product(client, tenant_id, product)
    matches = list(client.device_groups(tenant_id, product_id=product_id, name=value))
    if not matches:
        raise CliError(f"product {product!r} has no device group named {value!r}")
    return matches[0].id
