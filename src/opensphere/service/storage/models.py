"""The service's tables. Every list is paged by keyset over a (scope, id) index."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from opensphere.service.storage.types import UTCDateTime, new_id

uuid_pk = Annotated[uuid.UUID, mapped_column(primary_key=True, default=new_id)]
timestamp = Annotated[dt.datetime, mapped_column(UTCDateTime())]
name_str = Annotated[str, mapped_column(String(50))]
name_key_str = Annotated[str, mapped_column(String(50))]
description_str = Annotated[str, mapped_column(String(100), default="")]


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid_pk]
    name: Mapped[str] = mapped_column(String(254), unique=True)
    is_operator: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[timestamp]


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid_pk]
    name: Mapped[name_str]
    name_key: Mapped[name_key_str] = mapped_column(unique=True)
    created_at: Mapped[timestamp]
    updated_at: Mapped[timestamp]


class RoleAssignment(Base):
    __tablename__ = "role_assignments"
    __table_args__ = (Index("ix_role_assignments_user_tenant", "user_id", "tenant_id"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[timestamp]


class ApiToken(Base):
    __tablename__ = "api_tokens"
    __table_args__ = (
        Index("ix_api_tokens_user_id", "user_id", "id"),
        Index("ix_api_tokens_tenant_id", "tenant_id", "id"),
    )

    id: Mapped[uuid_pk]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[name_str]
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[timestamp]
    expires_at: Mapped[timestamp]
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_tenant_id", "tenant_id", "id"),)

    id: Mapped[uuid_pk]
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id"))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    actor_name: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(128))
    result: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[timestamp]
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name_key", name="uq_products_tenant_name"),
        Index("ix_products_tenant_id", "tenant_id", "id"),
    )

    id: Mapped[uuid_pk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[name_str]
    name_key: Mapped[name_key_str]
    description: Mapped[description_str]
    created_at: Mapped[timestamp]
    updated_at: Mapped[timestamp]


class DeviceGroup(Base):
    __tablename__ = "device_groups"
    __table_args__ = (
        UniqueConstraint("product_id", "name_key", name="uq_device_groups_product_name"),
        Index("ix_device_groups_tenant_id", "tenant_id", "id"),
        Index("ix_device_groups_product_id", "product_id", "id"),
    )

    id: Mapped[uuid_pk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"))
    name: Mapped[name_str]
    name_key: Mapped[name_key_str]
    description: Mapped[description_str]
    os_feed: Mapped[str] = mapped_column(String(16))
    update_policy: Mapped[str] = mapped_column(String(32))
    allow_crash_dumps: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[timestamp]
    updated_at: Mapped[timestamp]
