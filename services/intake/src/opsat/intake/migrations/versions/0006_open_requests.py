"""The read model's working set: `open_requests`, a narrow copy of the open requests that the team queue and
the backlog statistics read (they scanned every open row of `requests`, slow once a year has piled up).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from opsat.common.db import READ_MODEL_SCHEMA
from opsat.intake.projections.requests import copy_open_requests
from opsat.intake.projections.tables import open_requests

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A fresh database got the table from 0001 (read models come from the current metadata); an existing one
    # gets it here, filled from the rows as they stand (the projection keeps it from then on).
    if not sa.inspect(op.get_bind()).has_table(open_requests.name, schema=READ_MODEL_SCHEMA):
        open_requests.create(op.get_bind())
        op.execute(copy_open_requests())


def downgrade() -> None:
    open_requests.drop(op.get_bind(), checkfirst=True)
