"""TPM devices: trusted TPM manufacturer (EK) CAs, credential activations, bound keys

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import opensphere.service.storage.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str) -> sa.Column[sa.DateTime]:
    return sa.Column(
        name, opensphere.service.storage.types.UTCDateTime(timezone=True), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "tpm_manufacturer_cas",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("name_key", sa.String(length=50), nullable=False),
        sa.Column("thumbprint", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        _timestamp("not_before"),
        _timestamp("not_after"),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name_key"),
        sa.UniqueConstraint("thumbprint"),
    )
    op.create_table(
        "tpm_activations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("secret_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("ak_public", sa.LargeBinary(), nullable=False),
        sa.Column("ek_certificate", sa.LargeBinary(), nullable=False),
        sa.Column("manufacturer_ca_thumbprint", sa.String(length=64), nullable=False),
        _timestamp("expires_at"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("tpm_activations", schema=None) as batch_op:
        batch_op.create_index("ix_tpm_activations_expires_at", ["expires_at"], unique=False)
    op.create_table(
        "tpm_devices",
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("ak_public", sa.LargeBinary(), nullable=False),
        sa.Column("ek_certificate", sa.LargeBinary(), nullable=False),
        sa.Column("clock", sa.BigInteger(), nullable=True),
        sa.Column("reset_count", sa.BigInteger(), nullable=True),
        sa.Column("restart_count", sa.BigInteger(), nullable=True),
        sa.Column("boot_event", sa.LargeBinary(length=32), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"]),
        sa.PrimaryKeyConstraint("device_id"),
    )


def downgrade() -> None:
    op.drop_table("tpm_devices")
    with op.batch_alter_table("tpm_activations", schema=None) as batch_op:
        batch_op.drop_index("ix_tpm_activations_expires_at")
    op.drop_table("tpm_activations")
    op.drop_table("tpm_manufacturer_cas")
