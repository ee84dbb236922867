"""Read-model tables of the SLA monitor (schema `read_model`; rebuilt from the topic, never migrated in place).

`sla_targets` is one row per clock and target (response, resolution) with its current state: what the
at-risk queue, the breach list and the compliance figures read.
"""

from __future__ import annotations

from sqlalchemy import (
                        Boolean,
                        Column,
                        Date,
                        DateTime,
                        Float,
                        Index,
                        Integer,
                        MetaData,
                        PrimaryKeyConstraint,
                        String,
                        Table,
)

from opsat.common.consumer import processed_events_table, stream_versions_table
from opsat.common.db import READ_MODEL_SCHEMA

metadata = MetaData(schema=READ_MODEL_SCHEMA)
# Rows changed in place many times (every clock event, every holder change) leave a fifth of each page free, so
# that an update touching no indexed column (a team, a warning, the counters) stays on its page with no new
# index entries (a HOT update): measured, a third less PostgreSQL time for such an update (migration 0006).
READ_MODEL_STORAGE = {"fillfactor": 80}
processed_events = processed_events_table(metadata)
stream_versions = stream_versions_table(metadata)  # the runner keeps the read model monotone

sla_targets = Table(
    "sla_targets",
    metadata,
    Column("request_id", String, nullable=False),
    Column("target", String, nullable=False),  # response | resolution
    Column("organisation_id", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("priority", String, nullable=False),
    Column("customer_tier", String, nullable=False),
    Column("service", String),
    Column("team", String),
    Column("policy_id", String, nullable=False),
    Column("policy_version", Integer, nullable=False),
    Column("calendar_id", String, nullable=False),
    Column("status", String, nullable=False),  # running | paused | met | cancelled
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("met_at", DateTime(timezone=True)),
    Column("on_time", Boolean),
    Column("warned_percent", Integer),
    Column("breached_at", DateTime(timezone=True)),
    Column("escalated_to", String),
    Column("excusal", String),  # requested | approved | rejected: an approved one leaves compliance
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("request_id", "target"),
    postgresql_with=READ_MODEL_STORAGE,
)
Index("sla_targets_open_due", sla_targets.c.status, sla_targets.c.due_at)

outages = Table(
    "outages",
    metadata,
    Column("outage_id", String, primary_key=True),
    Column("service", String, nullable=False),
    Column("severity", String, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),  # null while it lasts
)
Index("outages_service_start", outages.c.service, outages.c.started_at)
Index("sla_targets_breached", sla_targets.c.breached_at)

# Requests flagged as stalled (DOMAIN 3.4), while the flag stands.
sla_stalls = Table(
    "sla_stalls",
    metadata,
    Column("request_id", String, primary_key=True),
    Column("organisation_id", String, nullable=False),
    Column("team", String),
    Column("priority", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("service", String),
    Column("quiet_since", DateTime(timezone=True), nullable=False),
    Column("stalled_at", DateTime(timezone=True), nullable=False),
    Column("quiet_seconds", Float, nullable=False),
)
Index("sla_stalls_quiet_since", sla_stalls.c.quiet_since)

# Who holds each request and how its handling went, from intake's events: the workload board and the
# first-contact resolution rate read it beside `sla_targets`.
request_work = Table(
    "request_work",
    metadata,
    Column("request_id", String, primary_key=True),
    Column("team", String),
    Column("assignee", String),
    Column("reassignments", Integer, nullable=False, server_default="0"),  # away from a team or person
    Column("reopens", Integer, nullable=False, server_default="0"),
    Column("customer_waits", Integer, nullable=False, server_default="0"),  # asked the customer for information
    Column("updated_at", DateTime(timezone=True), nullable=False),
    postgresql_with=READ_MODEL_STORAGE,
)
Index("request_work_assignee", request_work.c.assignee)

# Time logged in intake (one row per entry): what the board sets against business hours available.
time_logs = Table(
    "time_logs",
    metadata,
    Column("entry_id", String, primary_key=True),
    Column("request_id", String, nullable=False),
    Column("engineer", String, nullable=False),
    Column("team", String),  # the request's team when the time was logged
    Column("minutes", Integer, nullable=False),
    Column("work_date", Date, nullable=False),
)
Index("time_logs_work_date", time_logs.c.work_date)
