"""batches handed off to a company's cloud worker: handoff_at, handoff_ref, reported_at

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 04:10:00
"""
import sqlalchemy as sa
from alembic import op

import models.base

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('handoff_at', models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('handoff_ref', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('reported_at', models.base.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_column('reported_at')
        batch_op.drop_column('handoff_ref')
        batch_op.drop_column('handoff_at')
