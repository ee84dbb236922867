"""Stalled requests, who holds each request (and how its handling went) and time logged: the read models of
the stalled list, the workload board and the first-contact resolution rate.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from opsat.sla_monitor.projections.tables import request_work, sla_stalls, time_logs

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in (sla_stalls, request_work, time_logs):  # a fresh database has them from 0001's current metadata
        table.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    for table in (time_logs, request_work, sla_stalls):
        table.drop(op.get_bind(), checkfirst=True)
