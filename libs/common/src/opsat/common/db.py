"""Database engines and the platform tables every service's database holds.

The platform tables (event store, outbox, idempotency keys, deadlines) are created by each
service's first alembic migration through `create_platform_tables`, written out as plain DDL so
that later changes to this module never rewrite history. Read models live in their own schema
(`read_model` by default) so that a projection can be rebuilt into a fresh schema and swapped in.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry

from opsat.common.observability import DB_POOL_IN_USE, DB_POOL_SIZE, DB_POOL_WAITERS

READ_MODEL_SCHEMA = "read_model"
REACTIONS_SCHEMA = "reactions"  # what reactions remember; survives read-model rebuilds
OUTBOX_CHANNEL = "opsat_outbox"
# Live projection batches hold this advisory lock shared; a read-model swap holds it exclusively, so no batch
# writes into the schema being retired while the rebuilt one catches up and takes its name.
READ_MODEL_LOCK = 0x6F70736174726D  # "opsatrm"
LOCK_READ_MODEL_SHARED = "select pg_advisory_xact_lock_shared(:key)"

PLATFORM_DDL_V1 = [
    """
    create table events (
        position       bigint generated always as identity primary key,
        stream_id      text        not null,
        stream_type    text        not null,
        version        integer     not null check (version >= 1),
        event_id       uuid        not null unique,
        event_type     text        not null,
        schema_version integer     not null,
        data           jsonb       not null,
        metadata       jsonb       not null,
        recorded_at    timestamptz not null default now(),
        constraint events_stream_version_key unique (stream_id, version)
    )
    """,
    # Events are never updated or deleted: enforce it in the database, not only in code.
    """
    create function events_are_immutable() returns trigger language plpgsql as $$
    begin
        raise exception 'events are append-only (% on events)', tg_op;
    end $$
    """,
    """
    create trigger events_no_update_delete before update or delete or truncate on events
        for each statement execute function events_are_immutable()
    """,
    # The outbox holds the positions not yet acknowledged by Kafka; the relay deletes them after.
    "create table outbox (position bigint primary key references events (position))",
    f"""
    create function outbox_notify() returns trigger language plpgsql as $$
    begin
        perform pg_notify('{OUTBOX_CHANNEL}', '');
        return null;
    end $$
    """,
    """
    create trigger outbox_notify after insert on outbox
        for each statement execute function outbox_notify()
    """,
    """
    create table idempotency_keys (
        key          text        not null,
        actor        text        not null,
        request_hash text        not null,
        result       jsonb       not null,
        created_at   timestamptz not null default now(),
        primary key (actor, key)
    )
    """,
    """
    create table deadlines (
        id          bigint generated always as identity primary key,
        kind        text        not null,
        stream_id   text        not null,
        due_at      timestamptz not null,
        payload     jsonb       not null default '{}',
        attempts    integer     not null default 0,
        last_error  text,
        constraint deadlines_kind_stream_key unique (kind, stream_id)
    )
    """,
    "create index deadlines_due_idx on deadlines (due_at)",
    f"create schema if not exists {READ_MODEL_SCHEMA}",
]

PLATFORM_DROP_V1 = [
    "drop table if exists deadlines",
    "drop table if exists idempotency_keys",
    "drop table if exists outbox",
    "drop function if exists outbox_notify() cascade",
    "drop table if exists events",
    "drop function if exists events_are_immutable() cascade",
]

# Reactions (event -> command or deadline) keep their processed ids outside the disposable read model.
PLATFORM_DDL_V2 = [
    f"create schema if not exists {REACTIONS_SCHEMA}",
    f"""
    create table {REACTIONS_SCHEMA}.processed_events (
        projection text not null,
        event_id   text not null,
        primary key (projection, event_id)
    )
    """,
]
PLATFORM_DROP_V2 = [f"drop schema if exists {REACTIONS_SCHEMA} cascade"]

# Idempotency keys belong to (issuer, organisation, subject), not to a subject alone; they expire by age.
PLATFORM_DDL_V3 = [
    "alter table idempotency_keys add column issuer text not null default '',"
    " add column organisation text not null default ''",
    "alter table idempotency_keys drop constraint idempotency_keys_pkey",
    "alter table idempotency_keys add constraint idempotency_keys_pkey primary key (issuer, organisation, actor, key)",
    "create index idempotency_keys_created_at_idx on idempotency_keys (created_at)",
]
PLATFORM_DROP_V3 = [
    "drop index if exists idempotency_keys_created_at_idx",
    "delete from idempotency_keys",  # keys of different callers could collide under the old key; they are a cache
    "alter table idempotency_keys drop constraint idempotency_keys_pkey",
    "alter table idempotency_keys add constraint idempotency_keys_pkey primary key (actor, key)",
    "alter table idempotency_keys drop column issuer, drop column organisation",
]


def metered_pool(name: str, size: int) -> type[AsyncAdaptedQueuePool]:
    """The pool class of one engine, reporting opsat_db_pool_{in_use,size,waiters}{pool=name}."""
    in_use, waiters = DB_POOL_IN_USE.labels(name), DB_POOL_WAITERS.labels(name)
    DB_POOL_SIZE.labels(name).set(size)

    class MeteredPool(AsyncAdaptedQueuePool):
        def _do_get(self) -> ConnectionPoolEntry:
            waiters.inc()  # blocks only while the pool is dry; otherwise gone before any scrape
            try:
                return super()._do_get()
            finally:
                waiters.dec()
                in_use.set(self.checkedout())

        def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
            super()._do_return_conn(record)
            in_use.set(self.checkedout())

    return MeteredPool


def create_engine(database_url: str, *, pool_size: int = 10, pool_timeout_s: float = 30.0,
                  pool_name: str = "api") -> AsyncEngine:
    """No pre-ping: it cost three of a submit's six round trips. A connection broken by a database
    restart fails one request (503, retry) and the pool replaces it; recycling bounds a connection's age.
    No overflow: overflow connections are closed on return, and reopening them cost PostgreSQL more CPU
    than waiting for a pooled one (bench: new sessions 205 -> 47, PostgreSQL CPU -40 %). A request that waits
    `pool_timeout_s` for a connection fails with a pool timeout (the API answers 503 with Retry-After)."""
    return create_async_engine(database_url, pool_size=pool_size, max_overflow=0, pool_pre_ping=False,
                               pool_recycle=1800, pool_timeout=pool_timeout_s,
                               poolclass=metered_pool(pool_name, pool_size))


def lean_timestamps(engine: AsyncEngine) -> AsyncEngine:
    """`engine`, its connections writing and reading `timestamptz` values as asyncpg does, through `encode_timestamp`
    and `decode_timestamp` (asyncpg's tuple form of the type: microseconds since 2000-01-01 UTC). For a rebuild's
    lanes, whose COPY writes a few timestamps per event: asyncpg's own encoder compares each value with two naive
    infinities, which asks an aware value's time zone for its offset each time, then converts it. A request's row
    took 3.0-4.4 µs to encode with its two timestamps, 1.9-2.8 through these, 0.9-1.4 with none."""

    @event.listens_for(engine.sync_engine, "connect")
    def register(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.run_async(lambda conn: conn.set_type_codec(
            "timestamptz", schema="pg_catalog", encoder=encode_timestamp, decoder=decode_timestamp, format="tuple"))

    return engine


_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_INFINITY, _NEGATIVE_INFINITY = 2**63 - 1, -(2**63)  # PostgreSQL's 'infinity' and '-infinity'
# asyncpg writes any value at these instants as the infinities, as it does naive `datetime.max` and `.min`
_MAX = (datetime.max.replace(tzinfo=UTC) - _PG_EPOCH) // _MICROSECOND
_MIN = (datetime.min.replace(tzinfo=UTC) - _PG_EPOCH) // _MICROSECOND


def encode_timestamp(value: datetime | date) -> tuple[int]:
    """As asyncpg writes a `timestamptz`: an aware datetime at its instant; a naive one in local time; a date at local
    midnight (at today's offset); naive `datetime.max` and `datetime.min`, and any value at their instants in UTC, as
    the infinities."""
    if not isinstance(value, datetime):
        if not isinstance(value, date):
            raise TypeError(f"expected a datetime.date or datetime.datetime instance, got {type(value).__name__!r}")
        value = datetime(value.year, value.month, value.day, tzinfo=datetime.now(UTC).astimezone().tzinfo)
    elif value.tzinfo is None:
        if value == datetime.max:
            return (_INFINITY,)
        if value == datetime.min:
            return (_NEGATIVE_INFINITY,)
        value = value.astimezone(UTC)
    elif value.tzinfo is not UTC:
        value = value.astimezone(UTC)  # (past year 9999 in UTC: an OverflowError, as asyncpg's)
    microseconds = (value - _PG_EPOCH) // _MICROSECOND
    if microseconds == _MAX:
        return (_INFINITY,)
    if microseconds == _MIN:
        return (_NEGATIVE_INFINITY,)
    return (microseconds,)


def decode_timestamp(value: tuple[int]) -> datetime:
    """As asyncpg reads a `timestamptz`: an aware datetime in UTC, the infinities as naive `datetime.max` / `.min`."""
    microseconds = value[0]
    if microseconds == _INFINITY:
        return datetime.max
    if microseconds == _NEGATIVE_INFINITY:
        return datetime.min
    return _PG_EPOCH + timedelta(microseconds=microseconds)


def asyncpg_dsn(database_url: str) -> str:
    """SQLAlchemy's 'postgresql+asyncpg://' URL as a plain libpq DSN for asyncpg."""
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def connect_raw(database_url: str) -> asyncpg.Connection:
    """A dedicated asyncpg connection (LISTEN and advisory locks need one outside the pool)."""
    return await asyncpg.connect(asyncpg_dsn(database_url))
