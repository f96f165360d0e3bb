"""notification jobs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 20:03:20.209798
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification_job",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("template_id", sa.String(length=128), nullable=False),
        sa.Column("page", sa.String(length=255), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status <> 'sending' OR lease_until IS NOT NULL",
            name=op.f("ck_notification_job_sending_has_lease"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'no_allowance', 'failed', 'cancelled')",
            name=op.f("ck_notification_job_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app_user.id"],
            name=op.f("fk_notification_job_user_id_app_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_job")),
        sa.UniqueConstraint(
            "kind", "user_id", "subject_id", name=op.f("uq_notification_job_kind_user_id_subject_id")
        ),
    )
    op.create_index(
        "ix_notification_job_status_due_at", "notification_job", ["status", "due_at"], unique=False
    )
    op.create_index(op.f("ix_notification_job_user_id"), "notification_job", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_notification_job_user_id"), table_name="notification_job")
    op.drop_index("ix_notification_job_status_due_at", table_name="notification_job")
    op.drop_table("notification_job")
