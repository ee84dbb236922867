"""The platform tables of the throwaway `probe` service used by the service-kit tests.

Revision ID: p0001
Revises:
"""

from alembic import op

from opsat.common.db import PLATFORM_DDL_V1, PLATFORM_DDL_V2, PLATFORM_DDL_V3

revision = "p0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in [*PLATFORM_DDL_V1, *PLATFORM_DDL_V2, *PLATFORM_DDL_V3]:
        op.execute(statement)


def downgrade() -> None:
    raise RuntimeError("the probe service is only ever created fresh")
