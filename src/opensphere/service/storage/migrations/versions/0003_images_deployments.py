"""images, OS release images and feeds, deployments, device update status, TUF repositories

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import opensphere.service.storage.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "os_image_signers",
        sa.Column("thumbprint", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("thumbprint"),
    )
    op.create_table(
        "images",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("image_id", sa.Uuid(), nullable=False),
        sa.Column("component_id", sa.Uuid(), nullable=False),
        sa.Column("image_type", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("security_version", sa.BigInteger(), nullable=False),
        sa.Column("temporary", sa.Boolean(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("signer_thumbprint", sa.String(length=64), nullable=False),
        sa.Column("uploaded_by", sa.Uuid(), nullable=True),
        sa.Column("uploaded_by_name", sa.String(length=254), nullable=False),
        sa.Column(
            "uploaded_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "image_id", name="uq_images_tenant_image"),
    )
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_index("ix_images_sha256", ["sha256"], unique=False)
        batch_op.create_index("ix_images_tenant_id", ["tenant_id", "id"], unique=False)

    op.create_table(
        "os_release_images",
        sa.Column("image_id", sa.Uuid(), nullable=False),
        sa.Column("os_release_id", sa.Uuid(), nullable=False),
        sa.Column("component_id", sa.Uuid(), nullable=False),
        sa.Column("image_type", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("security_version", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["os_release_id"],
            ["os_releases.id"],
        ),
        sa.PrimaryKeyConstraint("image_id"),
        sa.UniqueConstraint("os_release_id", "component_id", name="uq_os_release_images_component"),
    )
    with op.batch_alter_table("os_release_images", schema=None) as batch_op:
        batch_op.create_index("ix_os_release_images_sha256", ["sha256"], unique=False)

    op.create_table(
        "tuf_files",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("tenant_id", "name"),
    )
    op.create_table(
        "tuf_repositories",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("head", sa.JSON(), nullable=False),
        sa.Column("root_key_ids", sa.JSON(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column(
            "refresh_due_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
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
        "deployments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("device_group_id", sa.Uuid(), nullable=False),
        sa.Column("image_ids", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("rollout_percentage", sa.Integer(), nullable=False),
        sa.Column("failure_threshold", sa.Integer(), nullable=False),
        sa.Column("min_reports", sa.Integer(), nullable=False),
        sa.Column("halt_reason", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_by_name", sa.String(length=254), nullable=False),
        sa.Column(
            "created_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["device_group_id"],
            ["device_groups.id"],
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deployments_device_group_id", ["device_group_id", "id"], unique=False
        )
        batch_op.create_index("ix_deployments_tenant_id", ["tenant_id", "id"], unique=False)

    op.create_table(
        "device_update_status",
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("installed_images", sa.JSON(), nullable=False),
        sa.Column("os_version", sa.String(length=64), nullable=True),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column(
            "reported_at",
            opensphere.service.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.device_id"],
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("device_id"),
    )
    with op.batch_alter_table("device_update_status", schema=None) as batch_op:
        batch_op.create_index(
            "ix_device_update_status_deployment_state", ["deployment_id", "state"], unique=False
        )

    with op.batch_alter_table("os_releases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "retail_eval_at",
                opensphere.service.storage.types.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column(
                "retail_at",
                opensphere.service.storage.types.UTCDateTime(timezone=True),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("os_releases", schema=None) as batch_op:
        batch_op.drop_column("retail_at")
        batch_op.drop_column("retail_eval_at")

    with op.batch_alter_table("device_update_status", schema=None) as batch_op:
        batch_op.drop_index("ix_device_update_status_deployment_state")

    op.drop_table("device_update_status")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_index("ix_deployments_tenant_id")
        batch_op.drop_index("ix_deployments_device_group_id")

    op.drop_table("deployments")
    op.drop_table("tuf_repositories")
    op.drop_table("tuf_files")
    with op.batch_alter_table("os_release_images", schema=None) as batch_op:
        batch_op.drop_index("ix_os_release_images_sha256")

    op.drop_table("os_release_images")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index("ix_images_tenant_id")
        batch_op.drop_index("ix_images_sha256")

    op.drop_table("images")
    op.drop_table("os_image_signers")
