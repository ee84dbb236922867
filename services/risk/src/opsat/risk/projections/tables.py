"""Read-model tables of the risk service (schema `read_model`; rebuilt from the topic, never migrated in place).

`risks` is each risk as it is now; `risk_versions` keeps every state a risk was in, from the time it took
effect, so that the register can be read as it was on any past date. `emergencies` is each activated plan
with its steps, progress and review.
"""

from __future__ import annotations

from sqlalchemy import Column, Date, DateTime, Index, Integer, MetaData, PrimaryKeyConstraint, String, Table
from sqlalchemy.dialects.postgresql import JSONB

from opsat.common.consumer import processed_events_table, stream_versions_table
from opsat.common.db import READ_MODEL_SCHEMA

metadata = MetaData(schema=READ_MODEL_SCHEMA)
processed_events = processed_events_table(metadata)
stream_versions = stream_versions_table(metadata)  # the runner keeps the read model monotone


def _risk_columns() -> list[Column]:
    return [Column("status", String, nullable=False), Column("title", String, nullable=False),
            Column("category", String, nullable=False), Column("subject_type", String, nullable=False),
            Column("subject", String, nullable=False), Column("owner", String), Column("source", String, nullable=False),
            Column("rule_id", String), Column("likelihood", Integer), Column("impact", Integer),
            Column("score", Integer), Column("level", String)]


risks = Table(
    "risks", metadata,
    Column("risk_id", String, primary_key=True),
    Column("version", Integer, nullable=False),
    *_risk_columns(),
    Column("description", String, nullable=False),
    Column("evidence", JSONB, nullable=False),  # upstream event ids behind the risk's signals
    Column("assessments", Integer, nullable=False),
    Column("mitigation_plan", String),
    Column("mitigation_due_on", Date),
    Column("mitigation_progress", Integer, nullable=False),
    Column("identified_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("risks_open_score", risks.c.status, risks.c.score)

risk_versions = Table(
    "risk_versions", metadata,
    Column("risk_id", String, nullable=False),
    Column("version", Integer, nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=False),
    *_risk_columns(),
    PrimaryKeyConstraint("risk_id", "version"),
)
Index("risk_versions_valid_from", risk_versions.c.valid_from)

emergencies = Table(
    "emergencies", metadata,
    Column("emergency_id", String, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("plan_id", String, nullable=False),
    Column("plan_version", Integer, nullable=False),
    Column("title", String, nullable=False),
    Column("reason", String, nullable=False),
    Column("team", String),
    Column("service", String),
    Column("status", String, nullable=False),  # active | stood_down
    Column("steps", JSONB, nullable=False),  # [{step_id, title, role, assignee, completed_at, completed_by, note}]
    Column("steps_total", Integer, nullable=False),
    Column("steps_done", Integer, nullable=False),
    Column("resources", JSONB, nullable=False),
    Column("trigger", JSONB, nullable=False),
    Column("review", JSONB),
    Column("activated_at", DateTime(timezone=True), nullable=False),
    Column("stood_down_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("emergencies_status", emergencies.c.status, emergencies.c.activated_at)
