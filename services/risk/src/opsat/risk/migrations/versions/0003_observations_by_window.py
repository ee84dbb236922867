"""Observations indexed by (source, subject, time): a counting rule's history query reads its window, not every
observation of the team or service ever stored.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("create index if not exists signal_observations_team_at on reactions.signal_observations"
               " (source, team, at)")
    op.execute("create index if not exists signal_observations_service_at on reactions.signal_observations"
               " (source, service, at)")
    op.execute("drop index if exists reactions.ix_reactions_signal_observations_team")
    op.execute("drop index if exists reactions.ix_reactions_signal_observations_service")


def downgrade() -> None:
    op.execute("create index if not exists ix_reactions_signal_observations_team on reactions.signal_observations"
               " (team)")
    op.execute("create index if not exists ix_reactions_signal_observations_service on reactions.signal_observations"
               " (service)")
    op.execute("drop index if exists reactions.signal_observations_service_at")
    op.execute("drop index if exists reactions.signal_observations_team_at")
