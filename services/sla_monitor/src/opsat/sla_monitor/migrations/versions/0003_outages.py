"""Outages of business services reported by monitoring: the read model availability is computed from.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from opsat.sla_monitor.projections.tables import outages

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    outages.create(op.get_bind(), checkfirst=True)  # a fresh database has it from 0001's current metadata


def downgrade() -> None:
    outages.drop(op.get_bind(), checkfirst=True)
