"""Platform tables (event store, outbox, idempotency keys, deadlines, reactions schema), the signal driver's
memory and the risk read model.

Revision ID: 0001
Revises:
"""

from alembic import op

from opsat.common.db import (
    PLATFORM_DDL_V1,
    PLATFORM_DDL_V2,
    PLATFORM_DDL_V3,
    PLATFORM_DROP_V1,
    PLATFORM_DROP_V2,
    PLATFORM_DROP_V3,
    READ_MODEL_SCHEMA,
)
from opsat.risk.app.reactions import SIGNAL_METADATA
from opsat.risk.projections.tables import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in [*PLATFORM_DDL_V1, *PLATFORM_DDL_V2, *PLATFORM_DDL_V3]:
        op.execute(statement)
    # Signals and activations list the configuration streams; risks' events must not make that a scan.
    op.execute("create index events_config_streams on events (stream_type, stream_id)"
               " where stream_type in ('risk_rule', 'risk_plan', 'risk_rota')")
    # The signal driver's memory lives in the reactions schema (it survives read-model rebuilds).
    SIGNAL_METADATA.create_all(op.get_bind())
    # Read models are disposable (rebuilt from the topic), so their tables come from the current metadata.
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    op.execute(f"drop schema if exists {READ_MODEL_SCHEMA} cascade")
    for statement in [*PLATFORM_DROP_V3, *PLATFORM_DROP_V2, *PLATFORM_DROP_V1]:
        op.execute(statement)
