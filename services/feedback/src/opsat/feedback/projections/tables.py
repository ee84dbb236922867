"""Read-model tables of the feedback service (schema `read_model`; rebuilt from the topic, never migrated in place).

`surveys`: one row per survey with its status and delivery; `responses`: one row per answer with the request's
facts (what CSAT, NPS and the breakdowns read); `followups`: the closed loop, complaints included.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from opsat.common.consumer import processed_events_table, stream_versions_table
from opsat.common.db import READ_MODEL_SCHEMA

metadata = MetaData(schema=READ_MODEL_SCHEMA)
processed_events = processed_events_table(metadata)
stream_versions = stream_versions_table(metadata)  # the runner keeps the read model monotone


def _facts() -> list[Column]:
    return [Column("organisation_id", String, nullable=False), Column("request_id", String),
            Column("campaign_id", String),
            Column("requester_id", String), Column("team", String), Column("assignee", String),
            Column("kind", String), Column("priority", String), Column("service", String)]


surveys = Table(
    "surveys", metadata,
    Column("survey_id", String, primary_key=True),
    *_facts(),
    Column("template_id", String, nullable=False),
    Column("template_version", Integer, nullable=False),
    Column("anonymous", Boolean, nullable=False),
    Column("language", String, nullable=False),
    Column("status", String, nullable=False),  # issued | answered | expired
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("reminded_at", DateTime(timezone=True)),
    Column("answered_at", DateTime(timezone=True)),
    Column("delivery", JSON, nullable=False),  # purpose -> {status, attempts, last_error, next_attempt_at, at}
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("surveys_issued", surveys.c.issued_at)

responses = Table(
    "responses", metadata,
    Column("survey_id", String, primary_key=True),
    *_facts(),
    Column("anonymous", Boolean, nullable=False),
    Column("template_id", String, nullable=False),
    Column("template_version", Integer, nullable=False),
    Column("ratings", JSON, nullable=False),
    Column("score", Float, nullable=False),
    Column("band", String, nullable=False),
    Column("nps", Integer, nullable=False),
    Column("nps_category", String, nullable=False),
    Column("comment", Text),
    Column("answered_at", DateTime(timezone=True), nullable=False),
)
Index("responses_answered", responses.c.answered_at)

followups = Table(
    "followups", metadata,
    Column("followup_id", String, primary_key=True),
    Column("organisation_id", String, nullable=False),
    Column("source", String, nullable=False),  # survey | complaint
    Column("reasons", JSON, nullable=False),
    Column("survey_id", String), Column("request_id", String), Column("customer_id", String),
    Column("team", String), Column("assignee", String),
    Column("complaint", Text),
    Column("filed_by", String, nullable=False),
    Column("owner", String, nullable=False),
    Column("status", String, nullable=False),
    Column("overdue", Boolean, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("customer_accepted", Boolean),
    Column("history", JSON, nullable=False),  # [{status, at, by, text}]
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("followups_open", followups.c.status, followups.c.due_at)

# Service facts of each request, from intake's and the SLA monitor's events: what satisfaction is compared with.
request_service_facts = Table(
    "request_service_facts", metadata,
    Column("request_id", String, primary_key=True),
    Column("sla_breached", Boolean, nullable=False, server_default="false"),  # any target breached
    Column("resolution_on_time", Boolean),
    Column("reassignments", Integer, nullable=False, server_default="0"),
    Column("reopened", Boolean, nullable=False, server_default="false"),
)

# Improvement actions (PDCA): the improvement board.
improvements = Table(
    "improvements", metadata,
    Column("improvement_id", String, primary_key=True),
    Column("organisation_id", String, nullable=False),
    Column("title", String, nullable=False),
    Column("plan", Text, nullable=False),
    Column("followup_ids", JSON, nullable=False),
    Column("trend", Text),
    Column("team", String), Column("engineer", String), Column("kind", String), Column("service", String),
    Column("owner", String, nullable=False),
    Column("proposed_by", String, nullable=False),
    Column("approved_by", String),
    Column("status", String, nullable=False),  # proposed | approved | implemented | verified | closed
    Column("cycle", Integer, nullable=False),
    Column("window_days", Integer, nullable=False),
    Column("min_responses", Integer, nullable=False),
    Column("implemented_at", DateTime(timezone=True)),
    Column("implementation", Text),
    Column("verify_due_at", DateTime(timezone=True)),
    Column("verdict", String),
    Column("before", JSON),  # {responses, csat_mean, satisfied_percent} of the window before the implementation
    Column("after", JSON),
    Column("proposed_at", DateTime(timezone=True), nullable=False),
    Column("history", JSON, nullable=False),  # [{status, at, by, text}]
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("improvements_board", improvements.c.status, improvements.c.proposed_at)
