"""Monotone read models: per stream, the version the `requests` projection applied (backfilled from its rows).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from opsat.common.db import READ_MODEL_SCHEMA
from opsat.intake.projections.tables import stream_versions

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A fresh database got the table from 0001 (read models come from the current metadata).
    stream_versions.create(op.get_bind(), checkfirst=True)
    op.execute(f"insert into {READ_MODEL_SCHEMA}.stream_versions (projection, source, stream_id, version)"
               f" select 'requests', '/opsat/intake', id, version from {READ_MODEL_SCHEMA}.requests"
               " on conflict do nothing")


def downgrade() -> None:
    op.execute(f"drop table if exists {READ_MODEL_SCHEMA}.stream_versions")
