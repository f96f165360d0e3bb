"""waitlisted parents counted on the class row

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "evening_class",
        sa.Column("waitlisted_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.execute(
        """UPDATE evening_class AS e SET waitlisted_count = w.waiting
             FROM (SELECT class_id, count(*) AS waiting FROM signup WHERE status = 'waitlisted'
                    GROUP BY class_id) AS w
            WHERE e.id = w.class_id"""
    )
    op.create_check_constraint(
        op.f("ck_evening_class_waitlist_not_negative"), "evening_class", "waitlisted_count >= 0"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_evening_class_waitlist_not_negative"), "evening_class", type_="check")
    op.drop_column("evening_class", "waitlisted_count")
