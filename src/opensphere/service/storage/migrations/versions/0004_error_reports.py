"""error reports

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import opensphere.service.storage.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "crash_dumps",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.Column("component_id", sa.Uuid(), nullable=True),
        sa.Column("image_id", sa.Uuid(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
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
    )
    with op.batch_alter_table("crash_dumps", schema=None) as batch_op:
        batch_op.create_index("ix_crash_dumps_created_at", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_crash_dumps_device", ["tenant_id", "device_id", "id"], unique=False
        )

    op.create_table(
        "error_report_settings",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("event_retention_days", sa.Integer(), nullable=False),
        sa.Column("dump_retention_days", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    op.create_table(
        "problems",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("component_key", sa.String(length=36), nullable=False),
        sa.Column("image_key", sa.String(length=36), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column(
            "first_seen",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "last_seen", opensphere.service.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "tenant_id", "category", "component_key", "image_key", "outcome", name="uq_problems_key"
        ),
    )
    with op.batch_alter_table("problems", schema=None) as batch_op:
        batch_op.create_index("ix_problems_tenant_id", ["tenant_id", "id"], unique=False)

    op.create_table(
        "error_events",
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=True),
        sa.Column("device_group_id", sa.Uuid(), nullable=True),
        sa.Column("problem_id", sa.Uuid(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("component_id", sa.Uuid(), nullable=True),
        sa.Column("image_id", sa.Uuid(), nullable=True),
        sa.Column("exit_status", sa.Integer(), nullable=True),
        sa.Column("signal_status", sa.Integer(), nullable=True),
        sa.Column("description", sa.String(length=512), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column(
            "start_time",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "end_time", opensphere.service.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("clock_skewed", sa.Boolean(), nullable=False),
        sa.Column(
            "received_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["problem_id"],
            ["problems.id"],
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("device_id", "id"),
    )
    with op.batch_alter_table("error_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_error_events_device_time", ["tenant_id", "device_id", "start_time"], unique=False
        )
        batch_op.create_index(
            "ix_error_events_problem_time", ["problem_id", "start_time"], unique=False
        )
        batch_op.create_index("ix_error_events_received_at", ["received_at"], unique=False)
        batch_op.create_index(
            "ix_error_events_tenant_time", ["tenant_id", "start_time"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("error_events", schema=None) as batch_op:
        batch_op.drop_index("ix_error_events_tenant_time")
        batch_op.drop_index("ix_error_events_received_at")
        batch_op.drop_index("ix_error_events_problem_time")
        batch_op.drop_index("ix_error_events_device_time")

    op.drop_table("error_events")
    with op.batch_alter_table("problems", schema=None) as batch_op:
        batch_op.drop_index("ix_problems_tenant_id")

    op.drop_table("problems")
    op.drop_table("error_report_settings")
    with op.batch_alter_table("crash_dumps", schema=None) as batch_op:
        batch_op.drop_index("ix_crash_dumps_device")
        batch_op.drop_index("ix_crash_dumps_created_at")

    op.drop_table("crash_dumps")
