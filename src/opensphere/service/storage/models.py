"""The service's tables. Every list is paged by keyset over a (scope, id) index."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
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


class ManufacturerCa(Base):
    """A manufacturer CA the operator trusts: devices whose IDevID chains to it are genuine."""

    __tablename__ = "manufacturer_cas"

    id: Mapped[uuid_pk]
    name: Mapped[name_str]
    name_key: Mapped[name_key_str] = mapped_column(unique=True)
    thumbprint: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(String(512))
    certificate_pem: Mapped[str] = mapped_column(Text)
    not_before: Mapped[timestamp]
    not_after: Mapped[timestamp]
    created_at: Mapped[timestamp]


class Device(Base):
    """A claimed device. A row exists only once claimed, and claiming is permanent."""

    __tablename__ = "devices"
    __table_args__ = (
        Index("ix_devices_tenant_id", "tenant_id", "id"),
        Index("ix_devices_device_group_id", "device_group_id", "id"),
    )

    id: Mapped[uuid_pk]
    device_id: Mapped[str] = mapped_column(String(128), unique=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    product_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("products.id"))
    device_group_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("device_groups.id"))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    manufacturer_ca_thumbprint: Mapped[str] = mapped_column(String(64))
    claimed_at: Mapped[timestamp]
    updated_at: Mapped[timestamp]
    last_attestation_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_attestation_result: Mapped[str | None] = mapped_column(String(16))
    last_attestation_code: Mapped[str | None] = mapped_column(String(64))
    os_version: Mapped[str | None] = mapped_column(String(64))
    certificate_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_nonce_issued_at: Mapped[int | None] = mapped_column(BigInteger)
    """When the newest attestation nonce this device used was issued (µs since the epoch)."""


class DeviceTally(Base):
    """How many devices of a group (nil UUID: none) have one value of one attribute.

    Kept exact by triggers on `devices` (migration 0006), so counts read a few rows instead
    of scanning the registry; `dimension` is enabled ('1'/'0'), os_version or attestation
    (last result), `value` '' for none.
    """

    __tablename__ = "device_tallies"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    device_group_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    dimension: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class OsRelease(Base):
    """Known-good reference values of one OS version, registered by the operator."""

    __tablename__ = "os_releases"

    id: Mapped[uuid_pk]
    version: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[description_str]
    measurements: Mapped[list[list[str]]] = mapped_column(JSON)
    created_at: Mapped[timestamp]
    retail_eval_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    retail_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class SecurityVersionMinimum(Base):
    """The lowest security version of a component the service still accepts (anti-downgrade)."""

    __tablename__ = "security_version_minimums"

    component: Mapped[str] = mapped_column(String(64), primary_key=True)
    minimum: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[timestamp]


class ServiceCa(Base):
    """The service root CA that every tenant CA chains to; one row, its key in the key store."""

    __tablename__ = "service_cas"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64))
    certificate_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[timestamp]


class TenantCa(Base):
    """One generation of a tenant's CA; generation N+1 is the rotation successor of N.

    Its key has two certificates: `certificate_pem`, signed by the service root (the chain
    devices present), and `anchor_pem`, self-signed with the same name and key, which a
    relying party trusts to accept this tenant's devices and no other tenant's.
    """

    __tablename__ = "tenant_cas"
    __table_args__ = (
        UniqueConstraint("tenant_id", "generation", name="uq_tenant_cas_generation"),
        Index("ix_tenant_cas_tenant_id", "tenant_id", "id"),
    )

    id: Mapped[uuid_pk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    generation: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[str] = mapped_column(String(64))
    thumbprint: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(String(512))
    certificate_pem: Mapped[str] = mapped_column(Text)
    anchor_pem: Mapped[str] = mapped_column(Text)
    not_before: Mapped[timestamp]
    not_after: Mapped[timestamp]
    active_from: Mapped[timestamp]
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[timestamp]


class Image(Base):
    """A tenant's uploaded image, as stored: production-signed with the tenant's key; immutable."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("tenant_id", "image_id", name="uq_images_tenant_image"),
        Index("ix_images_tenant_id", "tenant_id", "id"),
        Index("ix_images_sha256", "sha256"),
    )

    id: Mapped[uuid_pk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    image_id: Mapped[uuid.UUID]
    component_id: Mapped[uuid.UUID]
    image_type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    security_version: Mapped[int] = mapped_column(BigInteger)
    temporary: Mapped[bool] = mapped_column(Boolean, default=False)
    sha256: Mapped[str] = mapped_column(String(64))
    length: Mapped[int] = mapped_column(BigInteger)
    signer_thumbprint: Mapped[str] = mapped_column(String(64))
    uploaded_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    uploaded_by_name: Mapped[str] = mapped_column(String(254))
    uploaded_at: Mapped[timestamp]


class OsImageSigner(Base):
    """A public key the operator trusts to sign OS component images (the OS vendor's)."""

    __tablename__ = "os_image_signers"

    thumbprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[name_str]
    public_key_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[timestamp]


class OsReleaseImage(Base):
    """One OS component image of an OS release, stored as the OS vendor signed it."""

    __tablename__ = "os_release_images"
    __table_args__ = (
        UniqueConstraint("os_release_id", "component_id", name="uq_os_release_images_component"),
        Index("ix_os_release_images_sha256", "sha256"),
    )

    image_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    os_release_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("os_releases.id"))
    component_id: Mapped[uuid.UUID]
    image_type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    security_version: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    length: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[timestamp]


class Deployment(Base):
    """A set of images assigned to a device group: one row per deployment, never per device."""

    __tablename__ = "deployments"
    __table_args__ = (
        Index("ix_deployments_device_group_id", "device_group_id", "id"),
        Index("ix_deployments_tenant_id", "tenant_id", "id"),
    )

    id: Mapped[uuid_pk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    device_group_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("device_groups.id"))
    image_ids: Mapped[list[str]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    rollout_percentage: Mapped[int] = mapped_column(Integer)
    failure_threshold: Mapped[int] = mapped_column(Integer)
    min_reports: Mapped[int] = mapped_column(Integer)
    halt_reason: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_by_name: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[timestamp]
    updated_at: Mapped[timestamp]


class DeviceUpdateStatus(Base):
    """Where one device is in its updates: its latest report, updated in place."""

    __tablename__ = "device_update_status"
    __table_args__ = (Index("ix_device_update_status_deployment_state", "deployment_id", "state"),)

    device_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("devices.device_id"), primary_key=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    deployment_id: Mapped[uuid.UUID | None]
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(200))
    installed_images: Mapped[list[str]] = mapped_column(JSON)
    os_version: Mapped[str | None] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(BigInteger)
    reported_at: Mapped[timestamp]


class UpdateStateTally(Base):
    """How many devices last reported `state` for a deployment (nil UUID: none), per tenant.

    Kept exact by triggers on `device_update_status` (migration 0006).
    """

    __tablename__ = "update_state_tallies"

    deployment_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class TufRepository(Base):
    """A tenant's TUF repository: which stored files make up its current state.

    `head` names rows of `tuf_files`; `generation` grows with every change, so caches compare
    one number; `refresh_due_at` is when the first online role enters its re-signing margin.
    """

    __tablename__ = "tuf_repositories"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    head: Mapped[dict[str, Any]] = mapped_column(JSON)
    root_key_ids: Mapped[list[str]] = mapped_column(JSON)
    generation: Mapped[int] = mapped_column(BigInteger)
    refresh_due_at: Mapped[timestamp]
    updated_at: Mapped[timestamp]


class TufFile(Base):
    """One signed metadata file or manifest, append-only: a name never changes its bytes."""

    __tablename__ = "tuf_files"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[timestamp]


class TpmManufacturerCa(Base):
    """A TPM manufacturer (EK) CA the operator trusts: TPMs whose EK certificate chains to it."""

    __tablename__ = "tpm_manufacturer_cas"

    id: Mapped[uuid_pk]
    name: Mapped[name_str]
    name_key: Mapped[name_key_str] = mapped_column(unique=True)
    thumbprint: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(String(512))
    certificate_pem: Mapped[str] = mapped_column(Text)
    not_before: Mapped[timestamp]
    not_after: Mapped[timestamp]
    created_at: Mapped[timestamp]


class TpmActivation(Base):
    """A pending credential activation: the secret sealed to one TPM's (EK, AK name) pair.

    Single use and short-lived; only a SHA-256 of the secret is kept.
    """

    __tablename__ = "tpm_activations"
    __table_args__ = (Index("ix_tpm_activations_expires_at", "expires_at"),)

    id: Mapped[uuid_pk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    device_id: Mapped[str] = mapped_column(String(128))
    secret_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    ak_public: Mapped[bytes] = mapped_column(LargeBinary)
    ek_certificate: Mapped[bytes] = mapped_column(LargeBinary)
    manufacturer_ca_thumbprint: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[timestamp]


class TpmDevice(Base):
    """A claimed TPM device: its AK bound to its EK, and the TPM counters last attested."""

    __tablename__ = "tpm_devices"

    device_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("devices.device_id"), primary_key=True
    )
    ak_public: Mapped[bytes] = mapped_column(LargeBinary)
    ek_certificate: Mapped[bytes] = mapped_column(LargeBinary)
    clock: Mapped[int | None] = mapped_column(BigInteger)
    reset_count: Mapped[int | None] = mapped_column(BigInteger)
    restart_count: Mapped[int | None] = mapped_column(BigInteger)
    boot_event: Mapped[bytes | None] = mapped_column(LargeBinary(32))
