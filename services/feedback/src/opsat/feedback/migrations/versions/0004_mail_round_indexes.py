"""Partial indexes for the mail rounds: the due pending messages and the attempts not yet recorded on their
survey. Without them every round (each `mail_poll_interval_s`) read every message and attempt ever written.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("create index if not exists mail_outbox_due on mail_outbox (next_attempt_at) where status = 'pending'")
    op.execute("create index if not exists mail_attempts_unrecorded on mail_attempts (id) where recorded is false")


def downgrade() -> None:
    op.execute("drop index if exists mail_attempts_unrecorded")
    op.execute("drop index if exists mail_outbox_due")
