"""Read-model tables of the SLA monitor (schema `read_model`; rebuilt from the topic, never migrated in place).

`sla_targets` is one row per clock and target (response, resolution) with its current state: what the
at-risk queue, the breach list and the compliance figures read.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Index, Integer, MetaData, PrimaryKeyConstraint, String, Table

from opsat.common.consumer import processed_events_table, stream_versions_table
from opsat.common.db import READ_MODEL_SCHEMA

metadata = MetaData(schema=READ_MODEL_SCHEMA)
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
