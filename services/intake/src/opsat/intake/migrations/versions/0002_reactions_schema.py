"""Reactions keep their processed event ids in their own schema (a read-model swap must not drop them).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from opsat.common.db import PLATFORM_DDL_V2, PLATFORM_DROP_V2

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in PLATFORM_DDL_V2:
        op.execute(statement)
    op.execute("insert into reactions.processed_events select projection, event_id from read_model.processed_events"
               " where projection = 'auto_close_scheduler'")
    op.execute("delete from read_model.processed_events where projection = 'auto_close_scheduler'")


def downgrade() -> None:
    for statement in PLATFORM_DROP_V2:
        op.execute(statement)
