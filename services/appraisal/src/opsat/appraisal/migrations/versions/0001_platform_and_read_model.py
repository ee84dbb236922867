"""Platform tables (event store, outbox, idempotency keys, deadlines, reactions schema) and the appraisal
read model.

Revision ID: 0001
Revises:
"""

from alembic import op

from opsat.appraisal.projections.tables import metadata
from opsat.common.db import (
    PLATFORM_DDL_V1,
    PLATFORM_DDL_V2,
    PLATFORM_DDL_V3,
    PLATFORM_DROP_V1,
    PLATFORM_DROP_V2,
    PLATFORM_DROP_V3,
    READ_MODEL_SCHEMA,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in [*PLATFORM_DDL_V1, *PLATFORM_DDL_V2, *PLATFORM_DDL_V3]:
        op.execute(statement)
    # Read models are disposable (rebuilt from the topics), so their tables come from the current metadata.
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    op.execute(f"drop schema if exists {READ_MODEL_SCHEMA} cascade")
    for statement in [*PLATFORM_DROP_V3, *PLATFORM_DROP_V2, *PLATFORM_DROP_V1]:
        op.execute(statement)
