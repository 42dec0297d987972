"""Request and response bodies of the management API (JSON, snake_case, versioned under /v1)."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

NAME_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9 ._-]*[A-Za-z0-9._-])?$"
USER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$"
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"

Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=50, pattern=NAME_PATTERN),
    Field(
        description="1-50 letters, digits, spaces, '.', '_' or '-'; no leading or trailing space",
        examples=["Thermostat"],
    ),
]
UserName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=254, pattern=USER_NAME_PATTERN),
    Field(description="a user name or e-mail address", examples=["alice@example.com"]),
]
Description = Annotated[
    str,
    StringConstraints(max_length=100, pattern=TEXT_PATTERN),
    Field(description="up to 100 printable characters"),
]


class Role(StrEnum):
    """Per-tenant roles, as in Azure Sphere (reference §4.4)."""

    ADMINISTRATOR = "Administrator"
    CONTRIBUTOR = "Contributor"
    READER = "Reader"


class OsFeed(StrEnum):
    RETAIL = "Retail"
    RETAIL_EVAL = "RetailEval"


class UpdatePolicy(StrEnum):
    UPDATE_ALL = "UpdateAll"
    NO_3RD_PARTY_APP_UPDATES = "No3rdPartyAppUpdates"
    NO_UPDATES = "NoUpdates"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ItemT = TypeVar("ItemT", bound=BaseModel)


class Page(Model, Generic[ItemT]):
    """One page of a list; pass `continuation_token` back to get the next one."""

    items: list[ItemT]
    continuation_token: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable machine-readable `code`."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None = None
    instance: str | None = None


# --- users, tokens -----------------------------------------------------------------------


class TenantRole(Model):
    tenant_id: uuid.UUID
    tenant_name: str
    role: Role


class Me(Model):
    id: uuid.UUID
    name: str
    is_operator: bool
    token_id: uuid.UUID
    token_tenant_id: uuid.UUID | None
    roles: list[TenantRole]


class TokenCreate(Model):
    name: Name
    expires_in_days: int = Field(default=90, ge=1, le=730)
    tenant_id: uuid.UUID | None = Field(default=None, description="limit the token to this tenant")
    user: UserName | None = Field(
        default=None,
        description="issue the token for another user: the operator may for anyone, a "
        "tenant Administrator for a member of that tenant (the token is then limited to it)",
    )


class Token(Model):
    id: uuid.UUID
    name: str
    user_id: uuid.UUID
    user_name: str
    tenant_id: uuid.UUID | None
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    status: str = Field(description="Active, Expired or Revoked")


class CreatedToken(Token):
    token: str = Field(description="the secret; shown only in this answer")


# --- tenants, roles ----------------------------------------------------------------------


class TenantCreate(Model):
    name: Name
    administrator: UserName | None = Field(
        default=None, description="user made Administrator of the new tenant"
    )


class TenantUpdate(Model):
    name: Name


class Tenant(Model):
    id: uuid.UUID
    name: str
    created_at: dt.datetime
    updated_at: dt.datetime
    role: Role | None = Field(default=None, description="the caller's role in this tenant")


class RoleAssign(Model):
    role: Role


class RoleAssignment(Model):
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    user_name: str
    role: Role
    created_at: dt.datetime


# --- audit -------------------------------------------------------------------------------


class AuditEvent(Model):
    id: uuid.UUID
    tenant_id: uuid.UUID | None
    at: dt.datetime
    actor_id: uuid.UUID | None
    actor_name: str
    action: str
    target_type: str
    target_id: str | None
    result: str
    error_code: str | None
    request_id: str
    details: dict[str, object]


# --- products, device groups -------------------------------------------------------------


class ProductCreate(Model):
    name: Name
    description: Description = ""
    create_default_groups: bool = True


class ProductUpdate(Model):
    name: Name | None = None
    description: Description | None = None


class Product(Model):
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    description: str
    created_at: dt.datetime
    updated_at: dt.datetime


class DeviceGroupCreate(Model):
    product_id: uuid.UUID
    name: Name
    description: Description = ""
    os_feed: OsFeed = OsFeed.RETAIL
    update_policy: UpdatePolicy = UpdatePolicy.UPDATE_ALL
    allow_crash_dumps: bool = False


class DeviceGroupUpdate(Model):
    name: Name | None = None
    description: Description | None = None
    os_feed: OsFeed | None = None
    update_policy: UpdatePolicy | None = None
    allow_crash_dumps: bool | None = None


class DeviceGroup(Model):
    id: uuid.UUID
    tenant_id: uuid.UUID
    product_id: uuid.UUID
    name: str
    description: str
    os_feed: OsFeed
    update_policy: UpdatePolicy
    allow_crash_dumps: bool
    created_at: dt.datetime
    updated_at: dt.datetime
