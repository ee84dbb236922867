"""Intake's copy of the SLA monitor's calendars (latest version of each), read by auto-close.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from opsat.intake.app.calendars import followed_calendars

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    followed_calendars.create(op.get_bind())


def downgrade() -> None:
    followed_calendars.drop(op.get_bind())
