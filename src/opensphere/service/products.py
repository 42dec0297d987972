"""Products and their device groups.

A product is created with Azure Sphere's five default device groups unless
asked not to (reference §4.5).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import Session

from opensphere.api import schemas
from opensphere.api.schemas import NAME_PATTERN, OsFeed, Role, UpdatePolicy
from opensphere.service.deps import Context
from opensphere.service.errors import ConflictError, NotFoundError
from opensphere.service.paging import DEFAULT_LIMIT, decode_continuation, make_page
from opensphere.service.storage.models import Deployment, Device, DeviceGroup, Product
from opensphere.service.tenants import Continuation, Limit, TenantId
from opensphere.service.updates.publishing import (
    group_deployment_out,
    republish_published,
    unpublish_group,
)

router = APIRouter(prefix="/v1/tenants/{tenant_id}", tags=["products"])

ProductId = Annotated[uuid.UUID, Path(description="the product's GUID")]
DeviceGroupId = Annotated[uuid.UUID, Path(description="the device group's GUID")]
NameFilter = Annotated[
    str | None, Query(max_length=50, pattern=NAME_PATTERN, description="exact name, any case")
]


@dataclass(frozen=True, slots=True)
class DefaultGroup:
    name: str
    description: str
    os_feed: OsFeed
    update_policy: UpdatePolicy


DEFAULT_GROUPS = (
    DefaultGroup(
        "Development",
        "Default development device group",
        OsFeed.RETAIL,
        UpdatePolicy.NO_3RD_PARTY_APP_UPDATES,
    ),
    DefaultGroup("Field Test", "Default test device group", OsFeed.RETAIL, UpdatePolicy.UPDATE_ALL),
    DefaultGroup(
        "Production", "Default production device group", OsFeed.RETAIL, UpdatePolicy.UPDATE_ALL
    ),
    DefaultGroup(
        "Production OS Evaluation",
        "Default Production OS Evaluation device group",
        OsFeed.RETAIL_EVAL,
        UpdatePolicy.UPDATE_ALL,
    ),
    DefaultGroup(
        "Field Test OS Evaluation",
        "Default Field Test OS Evaluation device group",
        OsFeed.RETAIL_EVAL,
        UpdatePolicy.UPDATE_ALL,
    ),
)


def _product_out(product: Product) -> schemas.Product:
    return schemas.Product.model_validate(product, from_attributes=True)


def _group_out(group: DeviceGroup) -> schemas.DeviceGroup:
    return schemas.DeviceGroup.model_validate(group, from_attributes=True)


def _get_product(context: Context, tenant_id: uuid.UUID, product_id: uuid.UUID) -> Product:
    product = context.session.get(Product, product_id)
    if product is None or product.tenant_id != tenant_id:
        raise NotFoundError(
            f"there is no product {product_id} in this tenant", code="product_not_found"
        )
    return product


def get_device_group(session: Session, tenant_id: uuid.UUID, group_id: uuid.UUID) -> DeviceGroup:
    group = session.get(DeviceGroup, group_id)
    if group is None or group.tenant_id != tenant_id:
        raise NotFoundError(
            f"there is no device group {group_id} in this tenant", code="device_group_not_found"
        )
    return group


def _get_group(context: Context, tenant_id: uuid.UUID, group_id: uuid.UUID) -> DeviceGroup:
    return get_device_group(context.session, tenant_id, group_id)


def _refuse_if_devices(context: Context, where: ColumnElement[bool], what: str) -> None:
    """Devices must be moved first: deleting their group would leave them nowhere."""
    if context.session.scalar(select(Device.id).where(where).limit(1)) is not None:
        raise ConflictError(
            f"the {what} still has devices; move them to another device group first",
            code="has_devices",
        )


def _check_product_name_free(
    context: Context, tenant_id: uuid.UUID, name: str, except_id: uuid.UUID | None = None
) -> None:
    existing = context.session.scalar(
        select(Product.id).where(
            Product.tenant_id == tenant_id, Product.name_key == name.casefold()
        )
    )
    if existing is not None and existing != except_id:
        raise ConflictError(
            f"a product named {name!r} already exists in this tenant", code="name_conflict"
        )


def _check_group_name_free(
    context: Context, product_id: uuid.UUID, name: str, except_id: uuid.UUID | None = None
) -> None:
    existing = context.session.scalar(
        select(DeviceGroup.id).where(
            DeviceGroup.product_id == product_id, DeviceGroup.name_key == name.casefold()
        )
    )
    if existing is not None and existing != except_id:
        raise ConflictError(
            f"a device group named {name!r} already exists in this product", code="name_conflict"
        )


def _add_default_groups(context: Context, product: Product, now: dt.datetime) -> list[DeviceGroup]:
    taken = set(
        context.session.scalars(
            select(DeviceGroup.name_key).where(DeviceGroup.product_id == product.id)
        )
    )
    created = []
    for default in DEFAULT_GROUPS:
        if default.name.casefold() in taken:
            continue
        group = DeviceGroup(
            tenant_id=product.tenant_id,
            product_id=product.id,
            name=default.name,
            name_key=default.name.casefold(),
            description=default.description,
            os_feed=default.os_feed.value,
            update_policy=default.update_policy.value,
            allow_crash_dumps=False,
            created_at=now,
            updated_at=now,
        )
        context.session.add(group)
        created.append(group)
    context.session.flush()
    return created


@router.post("/products", status_code=201)
def create_product(
    tenant_id: TenantId, body: schemas.ProductCreate, context: Context
) -> schemas.Product:
    """Create a product (Contributor), with the five default device groups unless asked not to."""
    with context.change(
        "product.create", tenant_id=tenant_id, required=Role.CONTRIBUTOR, target_type="product"
    ) as change:
        _check_product_name_free(context, tenant_id, body.name)
        product = Product(
            tenant_id=tenant_id,
            name=body.name,
            name_key=body.name.casefold(),
            description=body.description,
            created_at=context.now,
            updated_at=context.now,
        )
        context.session.add(product)
        context.session.flush()
        change.target_id = str(product.id)
        change.details = {"name": body.name}
        if body.create_default_groups:
            groups = _add_default_groups(context, product, context.now)
            change.details["device_groups"] = [g.name for g in groups]
    return _product_out(product)


@router.get("/products")
def list_products(
    tenant_id: TenantId,
    context: Context,
    limit: Limit = DEFAULT_LIMIT,
    continuation_token: Continuation = None,
    name: NameFilter = None,
) -> schemas.Page[schemas.Product]:
    context.authorize(tenant_id, Role.READER)
    after = decode_continuation(continuation_token)
    query = select(Product).where(Product.tenant_id == tenant_id)
    if name is not None:
        query = query.where(Product.name_key == name.casefold())
    if after is not None:
        query = query.where(Product.id > after)
    rows = context.session.scalars(query.order_by(Product.id).limit(limit + 1)).all()
    return make_page(rows, limit, key=lambda p: p.id, out=_product_out)


@router.get("/products/{product_id}")
def show_product(tenant_id: TenantId, product_id: ProductId, context: Context) -> schemas.Product:
    context.authorize(tenant_id, Role.READER)
    return _product_out(_get_product(context, tenant_id, product_id))


@router.patch("/products/{product_id}")
def update_product(
    tenant_id: TenantId, product_id: ProductId, body: schemas.ProductUpdate, context: Context
) -> schemas.Product:
    with context.change(
        "product.update",
        tenant_id=tenant_id,
        required=Role.CONTRIBUTOR,
        target_type="product",
        target_id=str(product_id),
    ) as change:
        product = _get_product(context, tenant_id, product_id)
        changes = body.model_dump(exclude_unset=True, exclude_none=True)
        if "name" in changes:
            _check_product_name_free(context, tenant_id, changes["name"], product.id)
            product.name_key = changes["name"].casefold()
        for field, value in changes.items():
            setattr(product, field, value)
        product.updated_at = context.now
        change.details = changes
    return _product_out(product)


@router.delete("/products/{product_id}")
def delete_product(
    tenant_id: TenantId, product_id: ProductId, context: Context, request: Request
) -> schemas.Product:
    """Delete a product and its device groups (Administrator)."""
    with context.change(
        "product.delete",
        tenant_id=tenant_id,
        required=Role.ADMINISTRATOR,
        target_type="product",
        target_id=str(product_id),
    ) as change:
        product = _get_product(context, tenant_id, product_id)
        _refuse_if_devices(context, Device.product_id == product.id, "product")
        result = _product_out(product)
        groups = context.session.scalars(
            select(DeviceGroup).where(DeviceGroup.product_id == product.id)
        ).all()
        for group in groups:
            context.session.execute(
                delete(Deployment).where(Deployment.device_group_id == group.id)
            )
            unpublish_group(context.session, request.app.state.keys, group, context.now)
        context.session.execute(delete(DeviceGroup).where(DeviceGroup.product_id == product.id))
        context.session.delete(product)
        change.details = {"name": product.name}
    request.app.state.tuf.invalidate(tenant_id)
    return result


@router.post("/products/{product_id}/default-device-groups", status_code=201)
def create_default_groups(
    tenant_id: TenantId, product_id: ProductId, context: Context
) -> list[schemas.DeviceGroup]:
    """Add whichever of the five default device groups the product lacks (Contributor)."""
    with context.change(
        "product.create_default_groups",
        tenant_id=tenant_id,
        required=Role.CONTRIBUTOR,
        target_type="product",
        target_id=str(product_id),
    ) as change:
        product = _get_product(context, tenant_id, product_id)
        groups = _add_default_groups(context, product, context.now)
        change.details = {"device_groups": [g.name for g in groups]}
    return [_group_out(g) for g in groups]


@router.post("/device-groups", status_code=201)
def create_device_group(
    tenant_id: TenantId, body: schemas.DeviceGroupCreate, context: Context
) -> schemas.DeviceGroup:
    with context.change(
        "device_group.create",
        tenant_id=tenant_id,
        required=Role.CONTRIBUTOR,
        target_type="device_group",
    ) as change:
        product = _get_product(context, tenant_id, body.product_id)
        _check_group_name_free(context, product.id, body.name)
        group = DeviceGroup(
            tenant_id=tenant_id,
            product_id=product.id,
            name=body.name,
            name_key=body.name.casefold(),
            description=body.description,
            os_feed=body.os_feed.value,
            update_policy=body.update_policy.value,
            allow_crash_dumps=body.allow_crash_dumps,
            created_at=context.now,
            updated_at=context.now,
        )
        context.session.add(group)
        context.session.flush()
        change.target_id = str(group.id)
        change.details = body.model_dump(mode="json")
    return _group_out(group)


@router.get("/device-groups")
def list_device_groups(
    tenant_id: TenantId,
    context: Context,
    limit: Limit = DEFAULT_LIMIT,
    continuation_token: Continuation = None,
    product_id: Annotated[uuid.UUID | None, Query(description="only this product's")] = None,
    name: NameFilter = None,
) -> schemas.Page[schemas.DeviceGroup]:
    context.authorize(tenant_id, Role.READER)
    after = decode_continuation(continuation_token)
    if product_id is not None:
        query = select(DeviceGroup).where(
            DeviceGroup.product_id == product_id, DeviceGroup.tenant_id == tenant_id
        )
    else:
        query = select(DeviceGroup).where(DeviceGroup.tenant_id == tenant_id)
    if name is not None:
        query = query.where(DeviceGroup.name_key == name.casefold())
    if after is not None:
        query = query.where(DeviceGroup.id > after)
    rows = context.session.scalars(query.order_by(DeviceGroup.id).limit(limit + 1)).all()
    return make_page(rows, limit, key=lambda g: g.id, out=_group_out)


@router.get("/device-groups/{device_group_id}")
def show_device_group(
    tenant_id: TenantId, device_group_id: DeviceGroupId, context: Context
) -> schemas.DeviceGroup:
    """A device group, with its current deployment and how many devices are in which state."""
    context.authorize(tenant_id, Role.READER)
    group = _get_group(context, tenant_id, device_group_id)
    return _group_out(group).model_copy(
        update={"deployment": group_deployment_out(context.session, group.id)}
    )


@router.patch("/device-groups/{device_group_id}")
def update_device_group(
    tenant_id: TenantId,
    device_group_id: DeviceGroupId,
    body: schemas.DeviceGroupUpdate,
    context: Context,
    request: Request,
) -> schemas.DeviceGroup:
    """Change a device group (Contributor); a new feed or update policy is published at once."""
    republished = False
    with context.change(
        "device_group.update",
        tenant_id=tenant_id,
        required=Role.CONTRIBUTOR,
        target_type="device_group",
        target_id=str(device_group_id),
    ) as change:
        group = _get_group(context, tenant_id, device_group_id)
        changes = body.model_dump(exclude_unset=True, exclude_none=True, mode="json")
        if "name" in changes:
            _check_group_name_free(context, group.product_id, changes["name"], group.id)
            group.name_key = changes["name"].casefold()
        for field, value in changes.items():
            setattr(group, field, value)
        group.updated_at = context.now
        if "os_feed" in changes or "update_policy" in changes:
            republished = republish_published(
                context.session, request.app.state.keys, [group], context.now
            )
        change.details = changes
    if republished:
        request.app.state.tuf.invalidate(tenant_id)
    return _group_out(group)


@router.delete("/device-groups/{device_group_id}")
def delete_device_group(
    tenant_id: TenantId, device_group_id: DeviceGroupId, context: Context, request: Request
) -> schemas.DeviceGroup:
    """Delete a device group (Administrator), its deployments and its update metadata role."""
    with context.change(
        "device_group.delete",
        tenant_id=tenant_id,
        required=Role.ADMINISTRATOR,
        target_type="device_group",
        target_id=str(device_group_id),
    ) as change:
        group = _get_group(context, tenant_id, device_group_id)
        _refuse_if_devices(context, Device.device_group_id == group.id, "device group")
        result = _group_out(group)
        context.session.execute(delete(Deployment).where(Deployment.device_group_id == group.id))
        unpublish_group(context.session, request.app.state.keys, group, context.now)
        context.session.delete(group)
        change.details = {"name": group.name, "product_id": str(group.product_id)}
    request.app.state.tuf.invalidate(tenant_id)
    return result
