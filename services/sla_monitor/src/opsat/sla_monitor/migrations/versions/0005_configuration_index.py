"""The clock driver reads every policy and calendar once per batch of intake events: a partial index on the
event store finds their few streams among millions of clock events (without it, a scan per batch).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("create index if not exists events_sla_configuration_idx on events (stream_type, stream_id, version)"
               " where stream_type in ('sla_policy', 'sla_calendar')")


def downgrade() -> None:
    op.execute("drop index if exists events_sla_configuration_idx")
