"""Read-model tables of the appraisal service (schema `read_model`; rebuilt from the topics, never migrated).

Facts are kept per request, as the other services told them, with the id of each event behind them:
`request_credits` (intake: who resolved it, for which team, reopened or not) and `sla_outcomes` (the SLA
monitor: each target met on time or late), and `subject_facts` (feedback and risk: answered surveys,
complaints, risks and emergencies, one row per event). A calculation reads the requests resolved in a
period and credits each to its resolver and team, and the other facts dated in the period; being a
function of these rows, it gives the same cards whatever order the topics arrived in. `periods`, `scorecards`, `appeals`, `awards` and `improvement_plans` are
the appraisal's own events, for the queries.
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

from opsat.common.consumer import processed_events_table, stream_versions_table
from opsat.common.db import READ_MODEL_SCHEMA

metadata = MetaData(schema=READ_MODEL_SCHEMA)
processed_events = processed_events_table(metadata)
stream_versions = stream_versions_table(metadata)

request_credits = Table(
    "request_credits",
    metadata,
    Column("request_id", String, primary_key=True),
    Column("organisation_id", String, nullable=False),
    Column("kind", String),
    Column("priority", String),
    Column("service", String),
    Column("team", String),
    Column("engineer", String),  # who resolved it last
    Column("resolved_at", DateTime(timezone=True)),
    Column("resolved_event_id", String),
    Column("reopen_event_ids", ARRAY(String), nullable=False, server_default="{}"),
)
Index("request_credits_resolved", request_credits.c.resolved_at)

sla_outcomes = Table(
    "sla_outcomes",
    metadata,
    Column("request_id", String, nullable=False),
    Column("target", String, nullable=False),  # response | resolution
    Column("on_time", Integer, nullable=False),  # 1 | 0, summed by the calculation
    Column("met_at", DateTime(timezone=True), nullable=False),
    Column("event_id", String, nullable=False),
    PrimaryKeyConstraint("request_id", "target"),
)

subject_facts = Table(
    "subject_facts",
    metadata,
    Column("event_id", String, primary_key=True),
    Column("fact", String, nullable=False),  # csat | complaint | risk | emergency
    Column("at", DateTime(timezone=True), nullable=False),
    # Whom the event names; a missing engineer or team is taken from the request (`request_credits`) when
    # the calculation runs, so a complaint filed before the request was resolved still finds its resolver.
    Column("request_id", String),
    Column("engineer", String),
    Column("team", String),
    Column("organisation_id", String),  # a complaint's: it binds only to a request of that organisation
    Column("score", Numeric),  # csat: the answer's weighted score 0-100, exactly as published
)
Index("subject_facts_at", subject_facts.c.at)

periods = Table(
    "periods",
    metadata,
    Column("period_id", String, primary_key=True),
    Column("organisation_id", String, nullable=False),
    Column("cadence", String, nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date, nullable=False),
    Column("catalogue_version", Integer, nullable=False),
    Column("status", String, nullable=False),
    Column("appeal_until", DateTime(timezone=True)),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

scorecards = Table(
    "scorecards",
    metadata,
    Column("period_id", String, nullable=False),
    Column("subject", String, nullable=False),  # an engineer's id, or team:<name>
    Column("subject_kind", String, nullable=False),  # engineer | team
    Column("total", Numeric(7, 2)),
    Column("grade", String, nullable=False),
    Column("card", JSONB, nullable=False),
    PrimaryKeyConstraint("period_id", "subject"),
)
Index("scorecards_ranking", scorecards.c.period_id, scorecards.c.subject_kind, scorecards.c.total)

appeals = Table(
    "appeals",
    metadata,
    Column("appeal_id", String, primary_key=True),
    Column("period_id", String, nullable=False),
    Column("subject", String, nullable=False),
    Column("kpi_id", String, nullable=False),
    Column("reason", Text, nullable=False),
    Column("filed_by", String, nullable=False),
    Column("filed_at", DateTime(timezone=True), nullable=False),
    Column("outcome", String),  # null while open; upheld | amended
    Column("review_reason", Text),
    Column("original_score", Numeric(7, 2)),
    Column("score", Numeric(7, 2)),
    Column("reviewed_by", String),
    Column("reviewed_at", DateTime(timezone=True)),
)
Index("appeals_open", appeals.c.outcome, appeals.c.filed_at)

awards = Table(
    "awards",
    metadata,
    Column("period_id", String, nullable=False),
    Column("subject", String, nullable=False),
    Column("grade", String, nullable=False),
    Column("bonus_coefficient", Numeric(6, 3), nullable=False),
    Column("recognition", String),
    Column("at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("period_id", "subject"),
)

improvement_plans = Table(
    "improvement_plans",
    metadata,
    Column("period_id", String, nullable=False),
    Column("subject", String, nullable=False),
    Column("grade", String, nullable=False),
    Column("goals", JSONB, nullable=False),
    Column("review_on", Date, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("period_id", "subject"),
)
