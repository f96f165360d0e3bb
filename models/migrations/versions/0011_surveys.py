"""Satisfaction surveys: survey, its strata and sample, participation apart from the responses

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-03 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "survey",
        sa.Column("district_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=80), nullable=False),
        sa.Column("intro", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("school_year", sa.String(length=9), nullable=True),
        sa.Column("opens_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("audience_school_ids", postgresql.ARRAY(sa.Uuid()), nullable=True),
        sa.Column("audience_grades", postgresql.ARRAY(sa.Integer()), nullable=True),
        sa.Column("sampling_method", sa.String(length=10), nullable=False),
        sa.Column("per_school", sa.Integer(), nullable=True),
        sa.Column("fraction", sa.Float(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("template", sa.String(length=40), nullable=True),
        sa.Column("template_version", sa.String(length=20), nullable=True),
        sa.Column("dimensions", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("results_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('draft', 'published', 'closed')", name=op.f("ck_survey_status_known")),
        sa.CheckConstraint(
            "sampling_method IN ('census', 'stratified')", name=op.f("ck_survey_sampling_known")
        ),
        sa.CheckConstraint(
            "closes_at IS NULL OR opens_at IS NULL OR closes_at > opens_at", name=op.f("ck_survey_window")
        ),
        sa.CheckConstraint(
            "status = 'draft' OR seed IS NOT NULL", name=op.f("ck_survey_drawn_when_published")
        ),
        sa.ForeignKeyConstraint(["created_by"], ["app_user.id"], name=op.f("fk_survey_created_by_app_user")),
        sa.ForeignKeyConstraint(
            ["district_id"], ["district.id"], name=op.f("fk_survey_district_id_district")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey")),
    )
    op.create_index("ix_survey_district_created", "survey", ["district_id", "created_at"], unique=False)
    op.create_table(
        "survey_stratum",
        sa.Column("survey_id", sa.Uuid(), nullable=False),
        sa.Column("school_id", sa.Uuid(), nullable=False),
        sa.Column("grade", sa.Integer(), nullable=False),
        sa.Column("population", sa.Integer(), nullable=False),
        sa.Column("sampled", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_survey_stratum_school_id_school")
        ),
        sa.ForeignKeyConstraint(
            ["survey_id"], ["survey.id"], name=op.f("fk_survey_stratum_survey_id_survey")
        ),
        sa.PrimaryKeyConstraint("survey_id", "school_id", "grade", name=op.f("pk_survey_stratum")),
    )
    op.create_table(
        "survey_sample",
        sa.Column("survey_id", sa.Uuid(), nullable=False),
        sa.Column("student_id", sa.Uuid(), nullable=False),
        sa.Column("school_id", sa.Uuid(), nullable=False),
        sa.Column("grade", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["school_id"], ["school.id"], name=op.f("fk_survey_sample_school_id_school")),
        sa.ForeignKeyConstraint(
            ["student_id"], ["student.id"], name=op.f("fk_survey_sample_student_id_student")
        ),
        sa.ForeignKeyConstraint(["survey_id"], ["survey.id"], name=op.f("fk_survey_sample_survey_id_survey")),
        sa.PrimaryKeyConstraint("survey_id", "student_id", name=op.f("pk_survey_sample")),
    )
    op.create_index("ix_survey_sample_student", "survey_sample", ["student_id"], unique=False)
    op.create_table(
        "survey_participation",
        sa.Column("survey_id", sa.Uuid(), nullable=False),
        sa.Column("student_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["student_id"], ["student.id"], name=op.f("fk_survey_participation_student_id_student")
        ),
        sa.ForeignKeyConstraint(
            ["survey_id"], ["survey.id"], name=op.f("fk_survey_participation_survey_id_survey")
        ),
        sa.PrimaryKeyConstraint("survey_id", "student_id", name=op.f("pk_survey_participation")),
    )
    op.create_table(
        "survey_pending_response",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("survey_id", sa.Uuid(), nullable=False),
        sa.Column("school_id", sa.Uuid(), nullable=False),
        sa.Column("grade", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["survey_id"], ["survey.id"], name=op.f("fk_survey_pending_response_survey_id_survey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_pending_response")),
    )
    op.create_index(
        "ix_survey_pending_cell", "survey_pending_response", ["survey_id", "school_id", "grade"], unique=False
    )
    op.create_table(
        "survey_response",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("survey_id", sa.Uuid(), nullable=False),
        sa.Column("school_id", sa.Uuid(), nullable=False),
        sa.Column("grade", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("answers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "text_status",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("sealed_openid", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["survey_id"], ["survey.id"], name=op.f("fk_survey_response_survey_id_survey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_response")),
    )
    op.create_index(
        "ix_survey_response_survey", "survey_response", ["survey_id", "school_id", "grade"], unique=False
    )
    op.create_index(
        "ix_survey_response_unchecked",
        "survey_response",
        ["survey_id"],
        unique=False,
        postgresql_where=sa.text("sealed_openid IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_survey_response_unchecked", table_name="survey_response")
    op.drop_index("ix_survey_response_survey", table_name="survey_response")
    op.drop_table("survey_response")
    op.drop_index("ix_survey_pending_cell", table_name="survey_pending_response")
    op.drop_table("survey_pending_response")
    op.drop_table("survey_participation")
    op.drop_index("ix_survey_sample_student", table_name="survey_sample")
    op.drop_table("survey_sample")
    op.drop_table("survey_stratum")
    op.drop_index("ix_survey_district_created", table_name="survey")
    op.drop_table("survey")
