"""Consumer runner: Kafka records -> a projection's read-model tables, exactly once in effect.

For each poll: one database transaction applies the records and remembers their event ids
(`processed_events`); each partition's offset is then committed to Kafka, at most every `commit_interval_s`
and always on a rebalance or a stop. A redelivery (after a crash, a rebalance or a relay retry) finds the id
and changes nothing. A consumer that names the events it `handles` is not given the others: a poll with none
of them costs no transaction at all.

Read models are monotone: `stream_versions` holds, per stream, the highest version a projection applied,
and an event at or below it is skipped (so a parked event re-driven after newer ones cannot roll a row
back). Failures are classified by `opsat.common.faults`: a transient one (database or broker away) rolls
the whole batch back and retries it with back-off, for as long as it lasts, and parks nothing; a poison
record (cannot decode, refused by the handler or a constraint) is retried a few times, then parked on the
projection's dead-letter topic.

Polls are pipelined one deep: while a poll's transaction is in PostgreSQL, the next poll is fetched and decoded
(`_Poll`). Transactions still run one after another in poll order and each poll's offsets are committed only
after its own transaction committed; a poll fetched before a rebalance is dropped and its partitions are sought
back to its first record, so nothing is skipped and nothing is applied out of order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from opentelemetry.trace import SpanKind
from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    text,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import AddConstraint

from opsat.common import faults, tracing
from opsat.common import observability as obs
from opsat.common.bulk import copy_records, json_text, qualified_name, quote_name
from opsat.common.collector import fewer_collections
from opsat.common.db import LOCK_READ_MODEL_SHARED, READ_MODEL_LOCK, READ_MODEL_SCHEMA
from opsat.common.domain import DomainEvent
from opsat.common.envelope import split_type
from opsat.common.freshness import READ_MODEL_CHANNEL
from opsat.common.kafka import topic_partitions

log = logging.getLogger(__name__)


def processed_events_table(metadata: MetaData, schema: str = READ_MODEL_SCHEMA) -> Table:
    """Event ids a consumer has applied. A projection keeps them beside its read model (a rebuild starts
    empty); a reaction keeps them in its own schema (a read-model swap must not make it act twice)."""
    return Table(
        "processed_events",
        metadata,
        Column("projection", String, nullable=False),
        Column("event_id", String, nullable=False),
        PrimaryKeyConstraint("projection", "event_id"),
        schema=schema,
    )


def stream_versions_table(metadata: MetaData, schema: str = READ_MODEL_SCHEMA) -> Table:
    """Per stream, the highest version a projection applied: the runner skips older events, so every
    projection is monotone without each one re-implementing the check."""
    return Table(
        "stream_versions",
        metadata,
        Column("projection", String, nullable=False),
        Column("source", String, nullable=False),
        Column("stream_id", String, nullable=False),
        Column("version", Integer, nullable=False),
        # The stream first: every lookup names all three, and a key led by two columns every row shares (one
        # projection, one source) made its build after a load compare them first each time, 4× the sort's time
        # (100,000 streams: 390 against 90 ms).
        PrimaryKeyConstraint("stream_id", "source", "projection"),
        schema=schema,
        # A load keeps its versions in memory and COPYs them in at its end (`_LoadedVersions`): keyed after it, unless
        # a load past `load_versions_in_memory` hands over to the table (`add_primary_key` then).
        info=KEY_AFTER_LOAD,
    )


@dataclass(frozen=True)
class ReceivedEvent:
    """A CloudEvent as a projection sees it; `event` is the typed domain event when the registry knows it (or,
    for a reaction's tolerant readers, the foreign event as read)."""

    id: str
    type: str
    event_type: str
    schema_version: int
    source: str
    subject: str
    sequence: int
    time: datetime
    data: dict[str, Any]
    tenant: str | None
    actor: str | None
    correlation_id: str | None
    event: DomainEvent | Any = None  # Any: a reaction's foreign event
    topic: str = ""
    partition: int = 0
    offset: int = 0


_new_object = object.__new__


class UndecodableRecord(faults.Poison, ValueError):
    pass


class EventDecoder(Protocol):
    """What `decode_record` asks of a registry: an `EventRegistry` (own events), or tolerant readers of other
    services' events (`opsat.common.reactions.ForeignReaders`)."""

    def __contains__(self, event_type: str) -> bool: ...

    def decode(self, event_type: str, schema_version: int, data: dict[str, Any]) -> Any: ...


def decode_record(record: ConsumerRecord, registries: Iterable[EventDecoder] = ()) -> ReceivedEvent:
    try:
        ce = orjson.loads(record.value)
        if not isinstance(ce.get("id"), str) or not ce["id"] or not isinstance(ce.get("data"), dict):
            raise ValueError("a CloudEvent needs a string id and an object as data")
        event_type, schema_version = split_type(ce["type"])
        data = ce["data"]
        typed = None
        for registry in registries:
            if event_type in registry:
                typed = registry.decode(event_type, schema_version, data)
                break
        # Every field given, so the frozen dataclass's __init__ (one object.__setattr__ per field, a tenth of
        # decoding a record) is skipped: the instance is the same as, and equal to, one built by __init__.
        received = _new_object(ReceivedEvent)
        received.__dict__.update(
            id=ce["id"],
            type=ce["type"],
            event_type=event_type,
            schema_version=schema_version,
            source=ce["source"],
            subject=ce["subject"],
            sequence=int(ce["sequence"]),
            time=datetime.fromisoformat(ce["time"]),
            data=data,
            tenant=ce.get("tenant"),
            actor=ce.get("actor"),
            correlation_id=ce.get("correlationid"),
            event=typed,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        return received
    except Exception as exc:  # anything malformed is a poison record, not a crash
        raise UndecodableRecord(f"{type(exc).__name__}: {exc}") from exc


class Projection(Protocol):
    """A read model fed by events. `apply` must use SQLAlchemy Core on the tables of `metadata`
    (schema READ_MODEL_SCHEMA), so that a rebuild can redirect it to a fresh schema.

    A consumer may also set `handles`, the event classes (domain or foreign, anything with an `event_type`) it
    acts on: the runner then skips the others before any database work (see `handled_types`). A projection sets
    `stream_local = True` when every row it reads or writes for an event belongs to that event's stream: a rebuild
    then replays its partitions in several lanes at once (`RunnerConfig.lane`). A table derived from the projection's
    others may be left alone while a rebuild loads (`loading(conn)`) and derived once by `after_load(conn)`."""

    name: str
    topics: list[str]
    metadata: MetaData

    async def apply(self, conn: AsyncConnection, event: ReceivedEvent) -> None: ...


class BatchProjection(Projection, Protocol):
    """A projection that can also write a whole batch at once (far fewer round trips than one by one).
    The runner falls back to `apply` per event, with retries and the dead-letter topic, if a batch fails."""

    async def apply_batch(self, conn: AsyncConnection, events: list[ReceivedEvent]) -> None: ...


def loading(conn: AsyncConnection) -> bool:
    """True in a rebuild's load: the first pass into a fresh schema, which nothing reads until it is swapped in. A
    projection may then skip keeping a table it derives from its other tables current batch by batch, and derive it
    once in its `after_load(conn)`, which the rebuild calls when the load is done."""
    return bool(conn.sync_connection.get_execution_options().get("opsat_loading"))


def handled_types(consumer: object) -> frozenset[str] | None:
    """The `event_type`s of the classes a consumer `handles`, or None (no `handles`): it is given every event."""
    handles = getattr(consumer, "handles", None)
    return None if handles is None else frozenset(cls.event_type for cls in handles)


def read_model_engine(engine: AsyncEngine, schema: str = READ_MODEL_SCHEMA) -> AsyncEngine:
    """The engine with read-model tables redirected to `schema` (the live one or a rebuild)."""
    if schema == READ_MODEL_SCHEMA:
        return engine
    return engine.execution_options(schema_translate_map={READ_MODEL_SCHEMA: schema})


# `Index(..., info=QUERY_ONLY)`: an index that only the API's queries use, never the projection's own statements.
# A rebuild creates it once the rows are in (one sort), not row by row as it writes (`create_read_model`).
QUERY_ONLY = {"opsat.query_only": True}
# `Table(..., info=KEY_AFTER_LOAD)`: a rebuild's load only adds rows to the table (COPY, or `after_load`'s INSERT ...
# SELECT), never reads, updates or upserts them, or adds the key first (`add_primary_key`). Its primary key is then
# built after the load, as the query-only indexes are, in one sort; a duplicate row fails the rebuild there.
KEY_AFTER_LOAD = {"opsat.key_after_load": True}
# `Table(..., info=DERIVED)`: in a rebuild's load only the projection's `after_load` writes the table. The other
# tables' indexes and statistics are built while `after_load` runs (`opsat.common.projections`), this one's after.
DERIVED = {"opsat.derived": True}
# The statistics target of `finish_load`'s ANALYZE, which samples 300 rows per unit: 3,000 (PostgreSQL's default, 100).
LOAD_STATISTICS_TARGET = 10


def query_only_indexes(projection: Projection) -> list[Index]:
    return [index for table in projection.metadata.sorted_tables
            for index in sorted(table.indexes, key=lambda index: str(index.name))
            if index.info.get("opsat.query_only") and not index.unique]


async def create_read_model(engine: AsyncEngine, projection: Projection, schema: str = READ_MODEL_SCHEMA, *,
                            for_load: bool = False) -> None:
    """The projection's tables in `schema`. `for_load` (a rebuild's): not yet the `QUERY_ONLY` indexes nor the
    `KEY_AFTER_LOAD` tables' primary keys, and no autovacuum while the rows go in (`finish_load` does all three
    after). Updating six indexes for each row a replay wrote cost it a third of PostgreSQL's time; autovacuum
    analysing the tables as they grew, a tenth of a replay's rate."""
    async with engine.begin() as conn:
        await conn.execute(text(f'create schema if not exists "{schema}"'))
    async with read_model_engine(engine, schema).begin() as conn:
        await conn.run_sync(projection.metadata.create_all)
        if for_load:
            for index in query_only_indexes(projection):
                await conn.run_sync(lambda sync_conn, index=index: index.drop(sync_conn))
            for table in projection.metadata.sorted_tables:
                name = qualified_name(conn, table)
                if table.info.get("opsat.key_after_load"):
                    key = await _primary_key(conn, name)
                    await conn.execute(text(f"alter table {name} drop constraint {quote_name(str(key))}"))
                await conn.execute(text(f"alter table {name} set (autovacuum_enabled = false)"))


def load_gate(engine: AsyncEngine, at_once: int = 2) -> asyncio.Semaphore:
    """Connections a load's end may use at once: `at_once`, never more than the pool holds (none waits on the pool,
    and times out there behind an index build)."""
    return asyncio.Semaphore(max(1, min(at_once, engine.pool.size())))


async def finish_load(engine: AsyncEngine, projection: Projection, schema: str, *,
                      tables: Sequence[Table] | None = None, gate: asyncio.Semaphore | None = None) -> None:
    """After a load into tables made `for_load`, per table (of `tables`, or all the projection's): the
    `KEY_AFTER_LOAD` primary key and the `QUERY_ONLY` indexes built on the rows as they are, autovacuum back, and
    statistics taken (the first queries after a swap are planned on them, not on empty tables'). Each table on a
    connection of its own, as many at a time as `gate` lets through (`load_gate`, two by default): one at a time,
    PostgreSQL used one core of two for a sixth of a replay of submits.

    The statistics are a first, quick look: the columns of the table's key and indexes (`_indexed_columns`, what the
    planner picks an index by), from a sample of 3,000 rows (`LOAD_STATISTICS_TARGET`). Named columns leave the table's
    count of changes as it was, so autovacuum, back on, takes the full statistics of every column within a minute
    (`autovacuum_naptime`), off the rebuild's time. After 100,000 submits, the requests' and timeline's statistics took
    15-18 ms each this way, 110-130 with the default sample, and twice that with every column."""
    read_model = read_model_engine(engine, schema)
    query_only = set(query_only_indexes(projection))
    gate = gate or load_gate(engine)

    async def finish(table: Table) -> None:
        async with gate, read_model.begin() as conn:
            if table.info.get("opsat.key_after_load"):
                await add_primary_key(conn, table)
            for index in sorted(query_only & table.indexes, key=lambda index: str(index.name)):
                await conn.run_sync(lambda sync_conn, index=index: index.create(sync_conn, checkfirst=True))
            name = qualified_name(conn, table)
            await conn.execute(text(f"alter table {name} reset (autovacuum_enabled)"))
            measured = _indexed_columns(table) or [column.name for column in table.columns]
            await conn.execute(text(f"set local default_statistics_target = {LOAD_STATISTICS_TARGET}"))
            await conn.execute(text(f"analyze {name} ({', '.join(map(quote_name, measured))})"))

    async with asyncio.TaskGroup() as group:
        for table in projection.metadata.sorted_tables if tables is None else tables:
            group.create_task(finish(table))


def _indexed_columns(table: Table) -> list[str]:
    """The names of the columns of the table's primary key and indexes, in the table's order."""
    indexed = {column.name for column in table.primary_key.columns}
    indexed.update(column.name for index in table.indexes for column in index.columns)
    return [column.name for column in table.columns if column.name in indexed]


async def lock_keying(conn: AsyncConnection, table: Table) -> None:
    """Until the transaction ends, the only one keying the table (`add_primary_key`): lanes of a load may at once."""
    await conn.execute(text("select pg_advisory_xact_lock(hashtext(:name))"), {"name": qualified_name(conn, table)})


async def add_primary_key(conn: AsyncConnection, table: Table) -> None:
    """The primary key of a `KEY_AFTER_LOAD` table, unless it has one already (a runner added it mid-load), one
    transaction at a time (`lock_keying`)."""
    name = qualified_name(conn, table)
    await lock_keying(conn, table)
    if await _primary_key(conn, name) is None:
        # (not isolated: the constraint stays in the CREATE TABLE of the next `create_all`)
        await conn.execute(AddConstraint(table.primary_key, isolate_from_table=False))


async def _primary_key(conn: AsyncConnection, table_name: str) -> str | None:
    """The name of the table's primary key constraint, if it has one."""
    return await conn.scalar(text("select conname from pg_constraint where contype = 'p'"
                                  " and conrelid = cast(:name as regclass)"), {"name": table_name})


@dataclass
class RunnerConfig:
    bootstrap: str
    group_id: str
    dlq_topic: str
    schema: str = READ_MODEL_SCHEMA
    max_retries: int = 3  # for poison: attempts before parking (transient faults are retried without limit)
    retry_backoff_s: float = 0.1
    retry_backoff_max_s: float = 5.0
    max_records: int = 1000
    # Kafka offsets committed at most this often (and on a rebalance or stop): a commit is a write to the broker's
    # offsets log and a round trip per poll; what a crash redelivers is deduplicated. 0: after every poll.
    commit_interval_s: float = 1.0
    # The broker answers a fetch once it holds `fetch_min_bytes` for it or `fetch_max_wait_ms` passed: at a few
    # hundred events a second a poll (a transaction, a fetch request) per record kept both cores busy and the
    # latency queued up; waiting up to 25 ms for more halved the command -> read model p99 at 200 submits/s
    # and took a third off the worker's CPU (bench/latency_compare.py). A backlog fills a fetch at once.
    fetch_min_bytes: int = 1 << 20
    fetch_max_wait_ms: int = 25
    # After a poll that found nothing, the next fetch is a long poll answered at the first record: an idle
    # consumer fetching every 25 ms cost its worker 6 % of a core and Kafka 10-14 % (one intake worker, measured),
    # against 1.5 % and 2 % so. The first record of a quiet spell is not held back for more.
    idle_fetch_max_wait_ms: int = 500
    session_timeout_ms: int = 10_000
    # How soon a topic created after the consumer started (another service's, started later) is read.
    metadata_max_age_ms: int = 30_000
    # Static membership: a restarted member with the same id gets its partitions back without a rebalance.
    group_instance_id: str | None = None
    registries: tuple[EventDecoder, ...] = ()
    # Rebuild mode: read every partition from the beginning (no group) and stop at the end offsets.
    until_end: bool = False
    # Rebuild mode into a fresh schema, from the beginning (`loading`): set by opsat.common.projections.
    loading: bool = False
    # In rebuild mode, start here instead of the beginning (a catch-up after a rebuild).
    start_offsets: dict[TopicPartition, int] | None = None
    # In rebuild mode, records per poll: fewer, larger transactions (no reader waits on a rebuild).
    rebuild_max_records: int = 5000
    # In rebuild mode, lanes a `stream_local` projection is replayed in at once (`opsat.common.projections`): while
    # one lane's batch is in PostgreSQL, another builds its rows. A stream lives in one partition, so lanes that
    # split the partitions touch disjoint rows.
    rebuild_lanes: int = 2
    # In a rebuild's load, each lane in a process of its own, forked from the rebuild's (where the platform forks): in
    # one process the lanes shared a core for their Python work (decoding records, building rows); in two, a replay
    # ran 1.15 (submits) to 1.3 (lifecycles) times as fast on 2 cores (bench/replay_compare.py). A projection's
    # in-memory state then changes in the lane's process, not in the caller's.
    rebuild_lane_processes: bool = True
    # In rebuild mode, (i, n): this runner reads only the partitions p with p % n == i. None: all of them.
    lane: tuple[int, int] | None = None
    # In a rebuild's load, streams whose versions a runner keeps in memory (`_LoadedVersions`, ~200 bytes each) and
    # writes once at the end; past this many it writes them and checks the table from then on, as a live runner does.
    load_versions_in_memory: int = 500_000


@dataclass
class RunnerStats:
    applied: int = 0
    duplicates: int = 0  # already applied (same id) or older than what the read model reflects
    ignored: int = 0  # not among the events the consumer `handles`
    parked: int = 0
    retries: int = 0  # batches rolled back by a transient fault and run again
    offsets: dict[TopicPartition, int] = field(default_factory=dict)


@lru_cache(maxsize=64)
def _seen_statement(processed: str | None, versions: str | None, notify: bool) -> str:
    """The statement of `ProjectionRunner._first_seen`, for projection $1 over the batch ($2: a JSON array of the
    events' ids or, with `versions`, of {event_id, source, stream_id, seq}; one document, not an array parameter per
    field, which asyncpg would check and encode element by element):
    - `processed` given: the ids are inserted (`fresh`: those not there before);
    - `versions` given: the streams' versions as they were (`old`) are returned, and each stream's version moves to
      its newest fresh event if that is above it (the same rule as `_newer_only`, which splits the events in Python);
    - `notify`: `pg_notify($3, $1)` once if a version moved (a live read model tells the API it changed).
    Data-modifying CTEs run whether or not the result reads them, and all see the snapshot of before the statement.
    The streams are found by key with the source named too: without it the lookup read every stream the projection
    ever saw, in every poll (133 ms at 300,000 streams; 0.2 ms with it)."""
    if versions is None:
        assert processed is not None
        return (f"insert into {processed} (projection, event_id) select $1, jsonb_array_elements_text($2::jsonb)"
                " on conflict do nothing returning 'id', event_id, null::text, null::int")
    parts = ["with b as (select * from jsonb_to_recordset($2::jsonb)"
             " as b(event_id text, source text, stream_id text, seq int))"]
    if processed is not None:
        parts.append(f"fresh as (insert into {processed} (projection, event_id) select $1, event_id from b"
                     " on conflict do nothing returning event_id)")
    parts.append(f"old as (select v.source, v.stream_id, v.version from (select distinct source, stream_id from b) k"
                 f" join {versions} v on v.projection = $1 and v.source = k.source and v.stream_id = k.stream_id)")
    # Each stream's newest fresh event, written where it is above the stored version (`moved`: the rows inserted or
    # updated). Not joined with `old`: its row estimate (that of an array of unknown length) made the planner loop
    # over it for each event of the batch, 340 ms a batch of 1,700.
    parts.append("newest as (select b.source, b.stream_id, max(b.seq) as version from b"
                 + (" join fresh using (event_id)" if processed is not None else "")
                 + " group by b.source, b.stream_id)")
    parts.append(f"moved as (insert into {versions} as v (projection, source, stream_id, version)"
                 " select $1, source, stream_id, version from newest"
                 " on conflict (projection, source, stream_id) do update set version = excluded.version"
                 " where v.version < excluded.version returning 1)")
    selects = ["select 'version' as kind, source, stream_id, version from old"]
    if processed is not None:
        selects.append("select 'id', event_id, null, null from fresh")
    if notify:
        selects.append("select 'notified', null, null, null from (select pg_notify($3, $1) from moved limit 1) n")
    return ",\n".join(parts) + "\n" + "\nunion all ".join(selects)


def _newer_only(events: list[ReceivedEvent], applied: dict[tuple[str, str], int]
                ) -> tuple[list[ReceivedEvent], list[tuple[ReceivedEvent, int]]]:
    """Split events into those newer than their stream's applied version (`applied`, as `_first_seen` read it) and
    the stale rest, with the version the read model reflects. Events of one stream arrive in order (one partition),
    so a batch can hold several."""
    applied = dict(applied)
    newer: list[ReceivedEvent] = []
    stale: list[tuple[ReceivedEvent, int]] = []
    for event in events:
        key = (event.source, event.subject)
        current = applied.get(key, 0)
        if event.sequence > current:
            newer.append(event)
            applied[key] = event.sequence
        else:
            stale.append((event, current))
    return newer, stale


class _BatchFailed(Exception):
    """A poll's batch failed on a poison error (its cause): rolled back, to be applied again one by one."""


@dataclass
class Outcomes:
    """What one transaction did; counted into the stats only once it committed."""

    applied: int = 0
    duplicates: int = 0
    ignored: int = 0
    stale: list[tuple[ReceivedEvent, int]] = field(default_factory=list)  # (event, version the row reflects)


COMMIT_ON_STOP_TIMEOUT_S = 5.0
DECODE_SLICE = 64  # records decoded between yields, so a reply from PostgreSQL to the poll in hand waits little


@dataclass
class _Poll:
    """One `getmany`, decoded: each record with its event, or the reason it cannot be read (parked when applied).
    `generation` is the runner's assignment count when the poll began (a rebalance since makes it stale)."""

    batch: dict[TopicPartition, list[ConsumerRecord]]
    decoded: list[tuple[ConsumerRecord, ReceivedEvent | UndecodableRecord]]
    generation: int


class _LoadedVersions:
    """A rebuild load's stream versions, kept in memory and written to `stream_versions` once at the end.

    The fresh schema's `stream_versions` is read by no one during the load, and only this runner writes the versions
    of its partitions' streams (a stream lives in one partition). A row per new stream and a lookup per batch were a
    tenth to a fifth of PostgreSQL's time in a replay (side by side). A version moves only with an applied event,
    inside the transaction (`pending`), and reaches `applied` when that transaction commits: a batch rolled back
    leaves none."""

    def __init__(self) -> None:
        self.applied: dict[tuple[str, str], int] = {}
        self.pending: dict[tuple[str, str], int] = {}

    def of(self, events: list[ReceivedEvent]) -> dict[tuple[str, str], int]:
        """The versions of the events' streams (those known), as `_first_seen` returns them."""
        versions = {}
        for event in events:
            key = (event.source, event.subject)
            version = self.pending.get(key) or self.applied.get(key)
            if version is not None:
                versions[key] = version
        return versions

    def moved(self, events: list[ReceivedEvent]) -> None:
        """`events` were applied (newer than their streams' versions, in order)."""
        for event in events:
            self.pending[(event.source, event.subject)] = event.sequence

    def committed(self) -> None:
        self.applied.update(self.pending)
        self.pending.clear()

    async def write(self, conn: AsyncConnection, projection: str, table: Table) -> None:
        """Once per runner, into rows no one else writes: a stream already there (in two lanes' partitions) would
        mean its events were applied out of order, so the rebuild fails rather than merging (at the COPY, or where
        the table's key is built after the load)."""
        await copy_records(conn, table, ("projection", "source", "stream_id", "version"),
                           [(projection, source, stream_id, version)
                            for (source, stream_id), version in self.applied.items()])


class ProjectionRunner:
    def __init__(self, engine: AsyncEngine, projection: Projection, config: RunnerConfig) -> None:
        self.projection = projection
        self.config = config
        self.engine = read_model_engine(engine, config.schema)
        in_load = config.loading and config.until_end  # a rebuild's first pass, into a fresh schema
        if in_load:
            self.engine = self.engine.execution_options(opsat_loading=True)
        tables = {t.name: t for t in projection.metadata.tables.values()}
        self.processed = tables["processed_events"]  # the projection's metadata must hold one
        self.versions = tables.get("stream_versions")  # every read-model projection has one (the kit checks)
        self.stats = RunnerStats()
        self._batch_lock = asyncio.Lock()
        self._dlq: AIOKafkaProducer | None = None
        self._outage = faults.Outage(log, f"projection {projection.name}")
        self._lag_series: set[TopicPartition] = set()
        self.ready = asyncio.Event()
        # A live read model (not a rebuild, not a reaction's memory) tells the API when it changed.
        self.notifies = self.versions is not None and config.schema == READ_MODEL_SCHEMA
        self.end_offsets: dict[TopicPartition, int] = {}  # rebuild mode: where it stops
        self.generation = 0  # assignments seen (rebalances): a poll fetched under an older one is not applied
        self.handles = handled_types(projection)
        self._uncommitted: dict[TopicPartition, int] = {}  # applied in PostgreSQL, not yet committed to Kafka
        self._last_commit = time.monotonic()
        # A rebuild's load keeps its stream versions in memory (None: they are read and moved in the table).
        self._loaded = _LoadedVersions() if in_load and self.versions is not None else None

    async def run(self, stop: asyncio.Event) -> RunnerStats:
        rebuilding = self.config.until_end
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.config.bootstrap,
            group_id=None if rebuilding else self.config.group_id,
            group_instance_id=None if rebuilding else self.config.group_instance_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=self.config.session_timeout_ms,
            heartbeat_interval_ms=self.config.session_timeout_ms // 3,
            metadata_max_age_ms=self.config.metadata_max_age_ms,
            fetch_min_bytes=1 if rebuilding else self.config.fetch_min_bytes,
            fetch_max_wait_ms=self.config.fetch_max_wait_ms,
        )
        max_records = self.config.rebuild_max_records if rebuilding else self.config.max_records
        with fewer_collections():
            return await self._run(consumer, max_records, stop)

    async def _run(self, consumer: AIOKafkaConsumer, max_records: int, stop: asyncio.Event) -> RunnerStats:
        await consumer.start()
        ahead: asyncio.Future[_Poll] | None = None
        try:
            end_offsets = await self._subscribe(consumer)
            self.ready.set()
            while not stop.is_set():
                if end_offsets is not None and self._reached(consumer, end_offsets):
                    break
                polled = await ahead if ahead is not None else await self._poll(consumer, max_records)
                ahead = None
                if end_offsets is None:
                    self._fetch_for(consumer, idle=not polled.batch)
                if not polled.batch:
                    await self._commit_offsets(consumer, due_only=True)
                else:
                    async with self._batch_lock:  # (a revoke takes it too: the check below holds until applied)
                        if polled.generation != self.generation:  # fetched before a rebalance: fetch it again
                            self._seek_back(consumer, polled)
                            continue
                        # The next poll is fetched and decoded while this one is in PostgreSQL.
                        ahead = asyncio.ensure_future(self._poll(consumer, max_records))
                        if tracing.active():
                            await self._process_traced(consumer, polled, stop)
                        else:
                            await self._process(consumer, polled, stop)
                self._record_lag(consumer)
            if self._loaded is not None and not stop.is_set():
                await self._write_loaded_versions(stop)
        finally:
            if ahead is not None:  # fetched, not applied, not committed: delivered again to whoever reads next
                ahead.cancel()
                await asyncio.wait({ahead})  # its own outcome is of no interest (a cancel of ours still propagates)
                if not ahead.cancelled():
                    ahead.exception()  # retrieved, so that asyncio does not report it
            self._forget_lag(set(self._lag_series))  # a stopped runner reports no lag
            try:  # bounded: a broker that is away must not hold the stop up (what is not committed is redelivered)
                await asyncio.wait_for(self._commit_offsets(consumer), COMMIT_ON_STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("projection %s: offsets not committed on stop; the last batches may be delivered again",
                            self.projection.name)
            await consumer.stop()
            if self._dlq is not None:
                await self._dlq.stop()
        return self.stats

    def _fetch_for(self, consumer: AIOKafkaConsumer, *, idle: bool) -> None:
        """The next fetches batch (wait up to `fetch_max_wait_ms` for `fetch_min_bytes`) while records flow, and
        long-poll (up to `idle_fetch_max_wait_ms`, answered at the first byte) once a poll found nothing. aiokafka
        reads these two settings from its fetcher each time it builds a fetch request (version pinned in
        constraints.txt; tests/integration/common/test_consumer_pipelining.py counts the fetches)."""
        fetcher = consumer._fetcher
        if idle:
            fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms = 1, self.config.idle_fetch_max_wait_ms
        else:
            fetcher._fetch_min_bytes = self.config.fetch_min_bytes
            fetcher._fetch_max_wait_ms = self.config.fetch_max_wait_ms

    async def _subscribe(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int] | None:
        if not self.config.until_end:
            consumer.subscribe(self.projection.topics, listener=_FinishBatchOnRevoke(self, consumer))
            return None
        partitions = []
        for topic in self.projection.topics:
            for p in await topic_partitions(consumer, topic):
                if self.config.lane is None or p % self.config.lane[1] == self.config.lane[0]:
                    partitions.append(TopicPartition(topic, p))
        consumer.assign(partitions)
        start = self.config.start_offsets
        if start is None:
            await consumer.seek_to_beginning(*partitions)
        else:
            for tp in partitions:
                consumer.seek(tp, start.get(tp, 0))
                if tp in start:
                    self.stats.offsets[tp] = start[tp]  # reached already when nothing came since
        self.end_offsets = await consumer.end_offsets(partitions) if partitions else {}
        return self.end_offsets

    def _reached(self, consumer: AIOKafkaConsumer, end_offsets: dict[TopicPartition, int]) -> bool:
        return all(self.stats.offsets.get(tp, 0) >= end for tp, end in end_offsets.items() if end > 0) and all(
            end == 0 or tp in self.stats.offsets for tp, end in end_offsets.items())

    async def _poll(self, consumer: AIOKafkaConsumer, max_records: int) -> _Poll:
        """The next records, decoded a slice at a time: run ahead, it yields to the poll in PostgreSQL."""
        generation = self.generation
        batch = await consumer.getmany(timeout_ms=200, max_records=max_records)
        decoded: list[tuple[ConsumerRecord, ReceivedEvent | UndecodableRecord]] = []
        registries = self.config.registries
        for records in batch.values():
            for record in records:
                try:
                    decoded.append((record, decode_record(record, registries)))
                except UndecodableRecord as exc:
                    decoded.append((record, exc))
                if len(decoded) % DECODE_SLICE == 0:
                    await asyncio.sleep(0)
        return _Poll(batch, decoded, generation)

    def _seek_back(self, consumer: AIOKafkaConsumer, polled: _Poll) -> None:
        """Forget a poll fetched under an older assignment: each partition still ours is read again from the
        poll's first record (no further than its committed offset, which a rebalance restores anyway)."""
        assigned = consumer.assignment()
        for tp, records in polled.batch.items():
            if tp in assigned and records:
                consumer.seek(tp, records[0].offset)

    async def _process(self, consumer: AIOKafkaConsumer, polled: _Poll, stop: asyncio.Event) -> None:
        """Everything one poll returned: undecodable records parked, the rest in one transaction, then the
        offsets (committed when due).

        A transient fault rolls the transaction back and runs it again after a back-off, until it heals or
        the runner stops (then nothing is committed and the batch is delivered again). A poison error rolls the
        batch back and applies it again one record at a time, to find and park the culprit."""
        records = polled.decoded
        unreadable = [(record, event) for record, event in records if isinstance(event, UndecodableRecord)]
        events = [(record, event) for record, event in records if not isinstance(event, UndecodableRecord)
                  and (self.handles is None or event.event_type in self.handles)]
        outcomes = Outcomes(ignored=len(records) - len(unreadable) - len(events))
        backoff = faults.Backoff(self.config.retry_backoff_s, self.config.retry_backoff_max_s)
        while True:
            try:
                while unreadable:
                    record, error = unreadable[0]
                    await self._park(record, str(error))
                    unreadable.pop(0)
                if events:
                    try:
                        outcomes = await self._in_transaction(self._apply_batch, events, outcomes.ignored)
                    except _BatchFailed as failed:
                        log.warning("projection %s: batch of %d failed; applying one by one", self.projection.name,
                                    len(events), exc_info=failed.__cause__)
                        outcomes = await self._in_transaction(self._apply_one_by_one, events, outcomes.ignored)
                break
            except Exception as exc:
                if not faults.is_transient(exc):
                    raise
                self.stats.retries += 1
                obs.CONSUMER_RETRIES.labels(self.projection.name).inc()
                self._outage.failed(exc)
                if await _sleep_or_stop(stop, backoff.next()):
                    return
        self._outage.healed()
        self._count(outcomes)
        offsets = {tp: records[-1].offset + 1 for tp, records in polled.batch.items()}
        self.stats.offsets.update(offsets)
        if not self.config.until_end:  # a rebuild commits nothing: it has no group
            # Only after the read model committed: a crash in between means a redelivery, which is a no-op.
            self._uncommitted.update(offsets)
            await self._commit_offsets(consumer, due_only=True)

    async def _write_loaded_versions(self, stop: asyncio.Event) -> None:
        """The load's stream versions into the table at its end, retried through a transient fault as batches are."""
        loaded = self._loaded
        assert loaded is not None and self.versions is not None
        backoff = faults.Backoff(self.config.retry_backoff_s, self.config.retry_backoff_max_s)
        while True:
            try:
                async with self.engine.begin() as conn:
                    await loaded.write(conn, self.projection.name, self.versions)
                self._loaded = None
                return
            except Exception as exc:
                if not faults.is_transient(exc):
                    raise
                self._outage.failed(exc)
                if await _sleep_or_stop(stop, backoff.next()):
                    return

    async def _in_transaction(self, work: Any, events: list[tuple[ConsumerRecord, ReceivedEvent]],
                              ignored: int) -> Outcomes:
        loaded = self._loaded
        if loaded is not None:
            loaded.pending.clear()  # moved by a transaction that did not commit
        try:
            outcomes = await self._transaction(work, events, loaded)
        except BaseException:
            self._loaded = loaded  # rolled back, a spill of the versions too: they are still only in memory
            raise
        if self._loaded is not None:
            self._loaded.committed()
        outcomes.ignored = ignored
        return outcomes

    async def _transaction(self, work: Any, events: list[tuple[ConsumerRecord, ReceivedEvent]],
                           loaded: _LoadedVersions | None) -> Outcomes:
        async with self.engine.begin() as conn:
            if self.config.until_end:
                # A rebuild lost in a crash is redone from the topic: no flush per commit. Its tables start empty
                # and grow by thousands of rows a batch, unanalysed: a plan cached while they were small (a scan)
                # would stay, so each statement is planned on the tables as they are.
                await conn.execute(text("select set_config('synchronous_commit', 'off', true),"
                                        " set_config('plan_cache_mode', 'force_custom_plan', true)"))
            if self.notifies:  # a read-model swap holds this exclusively (opsat.common.projections)
                await conn.execute(text(LOCK_READ_MODEL_SHARED), {"key": READ_MODEL_LOCK})
            if loaded is not None and len(loaded.applied) > self.config.load_versions_in_memory:
                # Past the limit: the versions go to the table with this batch, which checks them there already.
                log.info("projection %s: the versions of %d streams written mid-load, the table takes over",
                         self.projection.name, len(loaded.applied))
                # Locked before the rows go in: a lane keying the table waits for the other's rows to commit, so that
                # lane must not then wait for the key's lock (a deadlock, which PostgreSQL broke after a second by
                # failing one of the two batches, run again).
                await lock_keying(conn, self.versions)
                await loaded.write(conn, self.projection.name, self.versions)
                await add_primary_key(conn, self.versions)  # the table's lookups and upserts need it from now on
                self._loaded = None
            return await work(conn, events)  # (its NOTIFY wakes read-your-writes waits on commit)

    async def _commit_offsets(self, consumer: AIOKafkaConsumer, due_only: bool = False) -> None:
        """Commit the offsets applied since the last commit: now, or (`due_only`) once `commit_interval_s` passed."""
        if not self._uncommitted or (due_only and time.monotonic() - self._last_commit < self.config.commit_interval_s):
            return
        offsets, self._uncommitted = self._uncommitted, {}
        self._last_commit = time.monotonic()
        try:
            await consumer.commit(offsets)
        except Exception as exc:  # the read model holds the batch: a redelivery after this is a no-op
            log.warning("projection %s: offset commit failed (%s: %s); the batch may be delivered again",
                        self.projection.name, type(exc).__name__, exc)

    async def _process_traced(self, consumer: AIOKafkaConsumer, polled: _Poll, stop: asyncio.Event) -> None:
        """`_process` with a consumer span per record, child of the traceparent in its headers (the relay's
        publish span), and a debug line per record carrying the trace id."""
        spans = []
        for record in (r for records in polled.batch.values() for r in records):
            parent = next((v.decode("latin-1") for k, v in record.headers or () if k == "traceparent"), None)
            spans.append((record, tracing.tracer().start_span(
                f"apply {self.projection.name}", kind=SpanKind.CONSUMER, context=tracing.context_from(parent),
                attributes={"messaging.destination.name": record.topic, "messaging.kafka.offset": record.offset,
                            "opsat.projection": self.projection.name})))
        try:
            await self._process(consumer, polled, stop)
        finally:
            for record, span in spans:
                trace_id = format(span.get_span_context().trace_id, "032x")
                log.debug("projection %s handled %s[%d]@%d", self.projection.name, record.topic, record.partition,
                          record.offset, extra={"trace_id": trace_id})
                span.end()

    def _count(self, outcomes: Outcomes) -> None:
        duplicates = outcomes.duplicates + len(outcomes.stale)
        self.stats.applied += outcomes.applied
        self.stats.duplicates += duplicates
        self.stats.ignored += outcomes.ignored
        obs.EVENTS_APPLIED.labels(self.projection.name, "applied").inc(outcomes.applied)
        obs.EVENTS_APPLIED.labels(self.projection.name, "duplicate").inc(duplicates)
        if outcomes.ignored:
            obs.EVENTS_APPLIED.labels(self.projection.name, "ignored").inc(outcomes.ignored)

    async def _apply_batch(self, conn: AsyncConnection, records: list[tuple[ConsumerRecord, ReceivedEvent]]
                           ) -> Outcomes:
        """The fast path: one dedupe statement, one version check and one batch write. A poison error is raised
        as `_BatchFailed` (the transaction rolls back, the caller goes one by one); a transient one as it is."""
        try:
            fresh, versions = await self._first_seen(conn, [event for _, event in records])
            new: list[ReceivedEvent] = []
            for _, event in records:  # a relay retry can repeat an event inside one batch, too
                if event.id in fresh:
                    new.append(event)
                    fresh.discard(event.id)
            new, stale = _newer_only(new, versions) if self.versions is not None else (new, [])
            apply_batch = getattr(self.projection, "apply_batch", None)
            if apply_batch is not None:
                if new:
                    await apply_batch(conn, new)
            else:
                for event in new:
                    await self.projection.apply(conn, event)
            if self._loaded is not None:
                self._loaded.moved(new)
        except Exception as exc:
            if faults.is_transient(exc):
                raise
            raise _BatchFailed from exc
        return Outcomes(applied=len(new), duplicates=len(records) - len(new) - len(stale), stale=stale)

    async def _apply_one_by_one(self, conn: AsyncConnection, records: list[tuple[ConsumerRecord, ReceivedEvent]]
                                ) -> Outcomes:
        """The batch again, record by record (each in a savepoint), parking the ones that keep failing."""
        outcomes = Outcomes()
        for record, _ in records:
            outcome = await self._handle(conn, record)
            if outcome == "applied":
                outcomes.applied += 1
            elif outcome in ("duplicate", "stale"):  # (as the batch path counts them; parked ones are counted apart)
                outcomes.duplicates += 1
        return outcomes

    async def _first_seen(self, conn: AsyncConnection, events: list[ReceivedEvent]
                          ) -> tuple[set[str], dict[tuple[str, str], int]]:
        """Record the ids as processed and, for a projection with versions, move each stream's version up to its
        newest event not seen before; returns the ids not seen before and the versions as they were before this
        statement (`_newer_only` splits the events with them). One statement, one round trip (`_seen_statement`)."""
        ids = [event.id for event in events]
        if self._loaded is not None:  # a rebuild's load: the versions are in memory, the ids are not kept
            return set(ids), self._loaded.of(events)
        if self.versions is None:
            params: tuple[Any, ...] = (self.projection.name, json_text(ids))
        else:
            params = (self.projection.name, json_text([{"event_id": e.id, "source": e.source, "stream_id": e.subject,
                                                    "seq": e.sequence} for e in events])) \
                + ((READ_MODEL_CHANNEL,) if self.notifies else ())
        result = await conn.exec_driver_sql(self._seen_sql(conn), params)
        # A rebuild's fresh schema: the versions alone drop a repeated record (same stream and sequence), so the
        # ids are not written (a third of the rows a replay wrote; the live runner that takes over after the swap
        # checks versions first too).
        first = set(ids) if self._rebuilding_versions else set()
        versions: dict[tuple[str, str], int] = {}
        for kind, source, stream_id, version in result:
            if kind == "id":
                first.add(source)
            elif kind == "version":
                versions[(source, stream_id)] = version
        return first, versions

    @property
    def _rebuilding_versions(self) -> bool:
        return self.config.until_end and self.versions is not None

    def _seen_sql(self, conn: AsyncConnection) -> str:
        processed = None if self._rebuilding_versions else qualified_name(conn, self.processed)
        versions = None if self.versions is None else qualified_name(conn, self.versions)
        return _seen_statement(processed, versions, self.notifies)

    async def _handle(self, conn: AsyncConnection, record: ConsumerRecord) -> str:
        """One record on its own: "applied", "duplicate", "stale" (older than the row) or "parked".
        A transient fault propagates: it is the batch's to retry, not this record's to park."""
        try:
            event = decode_record(record, self.config.registries)
        except UndecodableRecord as exc:
            await self._park(record, str(exc))
            return "parked"
        error: Exception | None = None
        for attempt in range(self.config.max_retries + 1):
            try:
                async with conn.begin_nested():
                    fresh, versions = await self._first_seen(conn, [event])
                    if event.id not in fresh:
                        return "duplicate"
                    _, stale = _newer_only([event], versions)
                    if stale:
                        self._stale(event, stale[0][1])
                        return "stale"
                    await self.projection.apply(conn, event)
                if self._loaded is not None:
                    self._loaded.moved([event])
                return "applied"
            except Exception as exc:
                if faults.is_transient(exc):
                    raise
                error = exc  # the handler's bug or bad data: retry, then park
                if attempt < self.config.max_retries:
                    await asyncio.sleep(self.config.retry_backoff_s * 2**attempt)
        await self._park(record, f"{type(error).__name__}: {error}")
        # Remember it as handled so a redelivery does not park it twice; a re-drive clears this.
        await conn.execute(
            insert(self.processed).values(projection=self.projection.name, event_id=event.id).on_conflict_do_nothing()
        )
        return "parked"

    def _stale(self, event: ReceivedEvent, current: int) -> None:
        log.info("projection %s skipped %s (%s %s v%d): the read model already reflects v%d",
                 self.projection.name, event.id, event.type, event.subject, event.sequence, current)

    async def _park(self, record: ConsumerRecord, error: str) -> None:
        log.error("projection %s parked %s[%d]@%d: %s", self.projection.name, record.topic, record.partition,
                  record.offset, error)
        if self._dlq is None:
            self._dlq = AIOKafkaProducer(bootstrap_servers=self.config.bootstrap, acks="all")
            await self._dlq.start()
        headers = [
            ("error", error[:2000].encode()),
            ("original-topic", record.topic.encode()),
            ("original-partition", str(record.partition).encode()),
            ("original-offset", str(record.offset).encode()),
            ("projection", self.projection.name.encode()),
        ]
        await self._dlq.send_and_wait(self.config.dlq_topic, value=record.value, key=record.key, headers=headers)
        self.stats.parked += 1
        obs.DLQ_PARKED.labels(self.projection.name).inc()

    def _record_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None:
                position = self.stats.offsets.get(tp)
                if position is not None:
                    obs.CONSUMER_LAG.labels(self.projection.name, tp.topic, str(tp.partition)).set(
                        max(high - position, 0))
                    self._lag_series.add(tp)

    def _forget_lag(self, partitions: set[TopicPartition]) -> None:
        """Drop the lag series of partitions this runner no longer owns (another member reports them)."""
        for tp in partitions & self._lag_series:
            try:
                obs.CONSUMER_LAG.remove(self.projection.name, tp.topic, str(tp.partition))
            except KeyError:
                pass
            self._lag_series.discard(tp)
            if not self.config.until_end:
                self.stats.offsets.pop(tp, None)  # our position there is no longer known


class _FinishBatchOnRevoke(ConsumerRebalanceListener):
    """A rebalance waits for the batch in flight to commit before the partitions move; the lag series of
    the partitions that move are removed (their new owner reports them)."""

    def __init__(self, runner: ProjectionRunner, consumer: AIOKafkaConsumer) -> None:
        self.runner = runner
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.runner._batch_lock:  # noqa: SLF001 - the listener is part of the runner
            self.runner.generation += 1  # a poll fetched before this is not applied (see ProjectionRunner.run)
            await self.runner._commit_offsets(self.consumer)  # noqa: SLF001 - the new owner starts after them
        self.runner._forget_lag(set(revoked))  # noqa: SLF001

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.runner.generation += 1
        # Start each partition's lag from its committed offset (an idle partition has no batch to tell it).
        for tp in assigned:
            try:
                committed = await self.consumer.committed(tp)
            except Exception:  # lag is reported once a batch arrives
                log.debug("committed offset of %s unknown", tp, exc_info=True)
                continue
            if committed is not None:
                self.runner.stats.offsets[tp] = committed


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep, waking early on stop; returns whether stop is set."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
    return stop.is_set()


@dataclass
class RedriveResult:
    applied: int = 0
    skipped: int = 0  # older than what the read model reflects (or already applied): left alone
    parked_again: int = 0  # still failing

    @property
    def total(self) -> int:
        return self.applied + self.skipped + self.parked_again


async def redrive(engine: AsyncEngine, projection: Projection, config: RunnerConfig, *,
                  limit: int = 1000) -> RedriveResult:
    """Apply parked events again (after a fix): read the DLQ from the beginning, forget each id, re-apply.

    The same path as live records, so an event is applied only if it is still newer than what the read
    model reflects; older ones are skipped and logged. A transient fault aborts the re-drive without
    committing the dead-letter offsets of the partition in hand, so running it again resumes there."""
    consumer = AIOKafkaConsumer(config.dlq_topic, bootstrap_servers=config.bootstrap,
                                group_id=f"{config.group_id}.redrive", enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    runner = ProjectionRunner(engine, projection, config)
    result = RedriveResult()
    try:
        batch = await consumer.getmany(timeout_ms=2000, max_records=limit)
        for tp, records in batch.items():
            partial = RedriveResult()
            async with runner.engine.begin() as conn:
                for record in records:
                    try:
                        event_id = decode_record(record, config.registries).id
                        await conn.execute(runner.processed.delete().where(
                            runner.processed.c.projection == projection.name, runner.processed.c.event_id == event_id))
                    except UndecodableRecord:
                        pass  # still unreadable: _handle parks it again
                    outcome = await runner._handle(conn, record)  # noqa: SLF001 - same path as live records
                    if outcome == "applied":
                        partial.applied += 1
                    elif outcome == "parked":
                        partial.parked_again += 1
                    else:
                        partial.skipped += 1
            await consumer.commit({tp: records[-1].offset + 1})
            result.applied += partial.applied
            result.skipped += partial.skipped
            result.parked_again += partial.parked_again
    finally:
        await consumer.stop()
        if runner._dlq is not None:  # noqa: SLF001
            await runner._dlq.stop()  # noqa: SLF001
    return result
