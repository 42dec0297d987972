"""devices, manufacturer CAs, attestation nonces, OS reference values, service and tenant CAs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import opensphere.service.storage.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "attestation_nonces",
        sa.Column("nonce", sa.LargeBinary(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column(
            "expires_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("nonce"),
    )
    with op.batch_alter_table("attestation_nonces", schema=None) as batch_op:
        batch_op.create_index("ix_attestation_nonces_expires_at", ["expires_at"], unique=False)

    op.create_table(
        "manufacturer_cas",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("name_key", sa.String(length=50), nullable=False),
        sa.Column("thumbprint", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column(
            "not_before",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "not_after", opensphere.service.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "created_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name_key"),
        sa.UniqueConstraint("thumbprint"),
    )
    op.create_table(
        "os_releases",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=100), nullable=False),
        sa.Column("measurements", sa.JSON(), nullable=False),
        sa.Column(
            "created_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("version"),
    )
    op.create_table(
        "security_version_minimums",
        sa.Column("component", sa.String(length=64), nullable=False),
        sa.Column("minimum", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("component"),
    )
    op.create_table(
        "service_cas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "tenant_cas",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("thumbprint", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("anchor_pem", sa.Text(), nullable=False),
        sa.Column(
            "not_before",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "not_after", opensphere.service.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "active_from",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "revoked_at", opensphere.service.storage.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "created_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "generation", name="uq_tenant_cas_generation"),
        sa.UniqueConstraint("thumbprint"),
    )
    with op.batch_alter_table("tenant_cas", schema=None) as batch_op:
        batch_op.create_index("ix_tenant_cas_tenant_id", ["tenant_id", "id"], unique=False)

    op.create_table(
        "devices",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=True),
        sa.Column("device_group_id", sa.Uuid(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("manufacturer_ca_thumbprint", sa.String(length=64), nullable=False),
        sa.Column(
            "claimed_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "last_attestation_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("last_attestation_result", sa.String(length=16), nullable=True),
        sa.Column("last_attestation_code", sa.String(length=64), nullable=True),
        sa.Column("os_version", sa.String(length=64), nullable=True),
        sa.Column(
            "certificate_expires_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["device_group_id"],
            ["device_groups.id"],
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id"),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index("ix_devices_device_group_id", ["device_group_id", "id"], unique=False)
        batch_op.create_index("ix_devices_tenant_id", ["tenant_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index("ix_devices_tenant_id")
        batch_op.drop_index("ix_devices_device_group_id")

    op.drop_table("devices")
    with op.batch_alter_table("tenant_cas", schema=None) as batch_op:
        batch_op.drop_index("ix_tenant_cas_tenant_id")

    op.drop_table("tenant_cas")
    op.drop_table("service_cas")
    op.drop_table("security_version_minimums")
    op.drop_table("os_releases")
    op.drop_table("manufacturer_cas")
    with op.batch_alter_table("attestation_nonces", schema=None) as batch_op:
        batch_op.drop_index("ix_attestation_nonces_expires_at")

    op.drop_table("attestation_nonces")
