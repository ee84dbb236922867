"""Breach excusal: each target row of the read model carries the state of its excusal.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from opsat.common.db import READ_MODEL_SCHEMA

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(f"alter table {READ_MODEL_SCHEMA}.sla_targets add column if not exists excusal text")


def downgrade() -> None:
    op.execute(f"alter table {READ_MODEL_SCHEMA}.sla_targets drop column if exists excusal")
