"""The read-model rows updated in place (`sla_targets`, `request_work`) keep a fifth of each page free, so that an
update touching no indexed column is a HOT update (no new index entries). Pages written from now on; a rebuild
creates the tables so from the start (`READ_MODEL_STORAGE`).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from opsat.common.db import READ_MODEL_SCHEMA
from opsat.sla_monitor.projections.tables import READ_MODEL_STORAGE

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("sla_targets", "request_work")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"alter table {READ_MODEL_SCHEMA}.{table} set (fillfactor = {READ_MODEL_STORAGE['fillfactor']})")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"alter table {READ_MODEL_SCHEMA}.{table} reset (fillfactor)")
