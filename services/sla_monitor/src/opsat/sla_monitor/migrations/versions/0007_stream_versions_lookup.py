"""An index for the projection runner's lookup of a batch's streams in `stream_versions` (by projection and
stream id, whatever the source): the primary key (projection, source, stream_id) could not serve it, and each
batch of `sla_targets` read the projection's every row (a sequential or whole-range index scan).

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from opsat.common.db import READ_MODEL_SCHEMA

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(f"create index if not exists stream_versions_projection_stream"
               f" on {READ_MODEL_SCHEMA}.stream_versions (projection, stream_id)")


def downgrade() -> None:
    op.execute(f"drop index if exists {READ_MODEL_SCHEMA}.stream_versions_projection_stream")
