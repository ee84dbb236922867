"""Idempotency keys belong to (issuer, organisation, subject) and expire by age.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from opsat.common.db import PLATFORM_DDL_V3, PLATFORM_DROP_V3

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in PLATFORM_DDL_V3:
        op.execute(statement)


def downgrade() -> None:
    for statement in PLATFORM_DROP_V3:
        op.execute(statement)
