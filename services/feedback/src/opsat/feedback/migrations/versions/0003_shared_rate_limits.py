"""Rate limits of the public answer endpoints counted in the database, shared by every API replica.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from opsat.feedback.api.ratelimit import rate_limits

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    rate_limits.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    rate_limits.drop(op.get_bind(), checkfirst=True)
