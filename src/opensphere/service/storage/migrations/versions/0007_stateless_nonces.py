"""stateless attestation nonces: a MAC-bound challenge, used once per device in issue order

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

A challenge no longer writes a row: its nonce carries when it was issued and a MAC over that
and the device ID (`service.nonces`), which any service process sharing the key store can
check. Single use is kept on the device's own row: `last_nonce_issued_at` (microseconds) is
the issue time of the newest nonce the device has used, and the attestation's one UPDATE
only succeeds for a nonce issued later. `attestation_nonces` goes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import opensphere.service.storage.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, not a batch copy: that would drop the tally triggers on `devices`.
    op.add_column("devices", sa.Column("last_nonce_issued_at", sa.BigInteger(), nullable=True))
    op.drop_index("ix_attestation_nonces_expires_at", table_name="attestation_nonces")
    op.drop_table("attestation_nonces")


def downgrade() -> None:
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
    op.create_index(
        "ix_attestation_nonces_expires_at", "attestation_nonces", ["expires_at"], unique=False
    )
    op.drop_column("devices", "last_nonce_issued_at")
