"""Read-model tables of intake (schema `read_model`; rebuilt, never migrated in place).

`requests` is one row per request with its current state; `timeline` one row per event, with its
visibility (internal notes never reach requesters); `links` and `time_entries` are the many-sides.
`open_requests` is the working set: a narrow copy of the open requests' filterable columns, so the team
queue and the backlog statistics read the open work only, however many closed requests a year piles up.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSON, JSONB

from opsat.common.consumer import DERIVED, KEY_AFTER_LOAD, QUERY_ONLY, processed_events_table, stream_versions_table
from opsat.common.db import READ_MODEL_SCHEMA

metadata = MetaData(schema=READ_MODEL_SCHEMA)
processed_events = processed_events_table(metadata)
stream_versions = stream_versions_table(metadata)  # the runner skips events older than what rows reflect

requests = Table(
    "requests",
    metadata,
    Column("id", String, primary_key=True),
    Column("organisation_id", String, nullable=False),
    Column("requester_id", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("channel", String, nullable=False),
    Column("title", String, nullable=False),
    Column("description", Text, nullable=False),
    Column("service", String),
    Column("customer_tier", String, nullable=False),
    Column("impact", Integer, nullable=False),
    Column("urgency", Integer, nullable=False),
    Column("priority", String, nullable=False),
    Column("priority_overridden", Boolean, nullable=False, default=False),
    Column("status", String, nullable=False),
    Column("team", String),
    Column("assignee", String),
    Column("watchers", JSONB, nullable=False, default=list),
    Column("approval", String, nullable=False),
    Column("requirement", JSONB),  # {scope, acceptance_criteria, version, confirmed, changes: {id: {...}}}
    Column("reopen_count", Integer, nullable=False, default=0),
    Column("time_spent_minutes", Integer, nullable=False, default=0),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("accepted_at", DateTime(timezone=True)),
    Column("resolved_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),  # stream version applied: read-your-writes waits on it
    Index("requests_org_submitted_idx", "organisation_id", "submitted_at", "id", info=QUERY_ONLY),
    Index("requests_submitted_idx", "submitted_at", "id", info=QUERY_ONLY),
    # Filters name a team or an assignee, never their absence: a request without one (as every submit is, until
    # triage) is in neither index.
    Index("requests_team_status_idx", "team", "status", postgresql_where=text("team is not null"), info=QUERY_ONLY),
    Index("requests_assignee_status_idx", "assignee", "status", postgresql_where=text("assignee is not null"),
          info=QUERY_ONLY),
    Index("requests_status_priority_idx", "status", "priority", info=QUERY_ONLY),
)

OPEN_STATUSES = ("submitted", "accepted", "in_progress", "awaiting_customer", "reopened")

# Kept equal to the `requests` rows whose status is in OPEN_STATUSES by the projection, after each batch.
open_requests = Table(
    "open_requests",
    metadata,
    Column("id", String, primary_key=True),
    Column("organisation_id", String, nullable=False),
    Column("requester_id", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("service", String),
    Column("priority", String, nullable=False),  # "P1" < "P2" < …: the text order is the urgency order
    Column("status", String, nullable=False),
    Column("team", String),
    Column("assignee", String),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    # A queue is a team's: the working set's untriaged requests are in no queue, nor in its index.
    Index("open_requests_queue_idx", "team", "priority", "submitted_at", "id", postgresql_where=text("team is not null"),
          info=QUERY_ONLY),
    info={**DERIVED, **KEY_AFTER_LOAD},  # a rebuild copies it once from `requests` (`after_load`)
)

timeline = Table(
    "timeline",
    metadata,
    Column("request_id", String, nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("event_id", String, nullable=False),
    Column("event_type", String, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String),
    Column("visibility", String, nullable=False),  # "public" | "internal"
    Column("summary", Text, nullable=False),
    # The payload as published, kept as its text: no query looks into it, and PostgreSQL takes in a `json` value for
    # about half of what a `jsonb` one costs it (a schema built before keeps `jsonb`, which the same writes fill).
    Column("data", JSON, nullable=False),
    PrimaryKeyConstraint("request_id", "sequence"),
    info=KEY_AFTER_LOAD,  # a rebuild's load only adds entries
)

links = Table(
    "links",
    metadata,
    Column("request_id", String, nullable=False),
    Column("link_type", String, nullable=False),
    Column("target_id", String, nullable=False),
    Column("linked_at", DateTime(timezone=True), nullable=False),
    Column("linked_by", String),
    PrimaryKeyConstraint("request_id", "link_type", "target_id"),
    Index("links_target_idx", "target_id", info=QUERY_ONLY),
)

time_entries = Table(
    "time_entries",
    metadata,
    Column("request_id", String, nullable=False),
    Column("entry_id", String, nullable=False),
    Column("agent_id", String, nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("work_date", String),
    Column("note", Text),
    Column("logged_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("request_id", "entry_id"),
)
