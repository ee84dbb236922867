"""The signal driver finds a request's submission when an override raises its priority to P1.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("create index if not exists signal_observations_request on reactions.signal_observations"
               " (request_id) where source = 'incident'")


def downgrade() -> None:
    op.execute("drop index if exists reactions.signal_observations_request")
