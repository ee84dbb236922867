"""Facts from feedback and risk (answered surveys, complaints, risks, emergencies), one row per event.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from opsat.appraisal.projections.tables import subject_facts

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0001 creates the read model from the current metadata, so a new database has the table already.
    subject_facts.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    subject_facts.drop(op.get_bind(), checkfirst=True)
