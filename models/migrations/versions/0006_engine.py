"""provider circuits (issue 10: outages are not the recipient's fault)

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

import models.base

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'provider_circuits',
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('company_id', sa.String(length=64), nullable=True),
        sa.Column('provider', sa.String(length=32), nullable=False),
        sa.Column('down_since', models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('retry_at', models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )


def downgrade() -> None:
    op.drop_table('provider_circuits')
