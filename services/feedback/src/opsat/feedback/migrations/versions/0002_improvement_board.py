"""The improvement board (improvement actions, PDCA).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from opsat.feedback.projections.tables import improvements

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    improvements.create(op.get_bind(), checkfirst=True)  # a fresh database has it from 0001's current metadata


def downgrade() -> None:
    improvements.drop(op.get_bind(), checkfirst=True)
