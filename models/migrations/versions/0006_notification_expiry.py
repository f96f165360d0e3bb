"""notification jobs may expire

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "'pending', 'sending', 'sent', 'no_allowance', 'failed', 'cancelled'"


def upgrade() -> None:
    op.add_column("notification_job", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint(op.f("ck_notification_job_status_known"), "notification_job", type_="check")
    op.create_check_constraint(
        op.f("ck_notification_job_status_known"), "notification_job", f"status IN ({STATUSES}, 'expired')"
    )


def downgrade() -> None:
    op.execute("UPDATE notification_job SET status = 'cancelled' WHERE status = 'expired'")
    op.drop_constraint(op.f("ck_notification_job_status_known"), "notification_job", type_="check")
    op.create_check_constraint(
        op.f("ck_notification_job_status_known"), "notification_job", f"status IN ({STATUSES})"
    )
    op.drop_column("notification_job", "expires_at")
