"""Platform tables (event store, outbox, idempotency keys, deadlines, reactions schema), the survey reaction's
tables, the mail outbox and the feedback read model.

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
from opsat.feedback.app.delivery import mail_tables
from opsat.feedback.app.reactions import reaction_tables
from opsat.feedback.projections.tables import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in [*PLATFORM_DDL_V1, *PLATFORM_DDL_V2, *PLATFORM_DDL_V3]:
        op.execute(statement)
    # The answer endpoint finds a survey by its token's hash; templates are listed by stream type.
    op.execute("create unique index events_survey_token on events ((data->>'token_hash'))"
               " where event_type = 'opsat.feedback.survey.issued'")
    op.execute("create index events_template_streams on events (stream_type, stream_id)"
               " where stream_type = 'survey_template'")
    bind = op.get_bind()
    reaction_tables.create_all(bind)
    mail_tables.create_all(bind)
    # Read models are disposable (rebuilt from the topic), so their tables come from the current metadata.
    metadata.create_all(bind)


def downgrade() -> None:
    op.execute("drop table if exists mail_attempts, mail_outbox")
    op.execute(f"drop schema if exists {READ_MODEL_SCHEMA} cascade")
    for statement in [*PLATFORM_DROP_V3, *PLATFORM_DROP_V2, *PLATFORM_DROP_V1]:
        op.execute(statement)
