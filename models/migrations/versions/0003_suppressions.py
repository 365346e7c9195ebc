"""suppressions: the per-company suppression list

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 04:10:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('suppressions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('company_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('email_norm', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('company_key', 'email_norm', name='uq_suppressions_company_email')
    )


def downgrade() -> None:
    op.drop_table('suppressions')
