"""moodle certificate claims: one certificate per Moodle completion across runs

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

import models.base

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "moodle_certificate_claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=255), nullable=False),
        sa.Column("moodle_userid", sa.Integer(), nullable=False),
        sa.Column("courseid", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("claimed_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("site", "moodle_userid", "courseid", name="uq_moodle_certificate_claims_completion"),
    )
    with op.batch_alter_table("moodle_certificate_claims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_moodle_certificate_claims_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("moodle_certificate_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_moodle_certificate_claims_job_id"))
    op.drop_table("moodle_certificate_claims")
