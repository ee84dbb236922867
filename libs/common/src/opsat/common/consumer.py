"""Consumer runner: Kafka records -> a projection's read-model tables, exactly once in effect.

For each partition's batch: one database transaction applies the records and remembers their
event ids (`processed_events`), then the partition's offset is committed explicitly. A redelivery
(after a crash, a rebalance or a relay retry) finds the id and changes nothing. A record whose
handler keeps failing is retried with back-off, then parked on the projection's dead-letter topic.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, bindparam, func, literal, select, text
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from opsat.common import observability as obs
from opsat.common.db import READ_MODEL_SCHEMA
from opsat.common.domain import DomainEvent
from opsat.common.envelope import EventRegistry, split_type

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


@dataclass(frozen=True)
class ReceivedEvent:
    """A CloudEvent as a projection sees it; `event` is the typed domain event when the registry knows it."""

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
    event: DomainEvent | None = None
    topic: str = ""
    partition: int = 0
    offset: int = 0


class UndecodableRecord(ValueError):
    pass


def decode_record(record: ConsumerRecord, registries: Iterable[EventRegistry] = ()) -> ReceivedEvent:
    try:
        ce = json.loads(record.value)
        if not isinstance(ce.get("id"), str) or not ce["id"] or not isinstance(ce.get("data"), dict):
            raise ValueError("a CloudEvent needs a string id and an object as data")
        event_type, schema_version = split_type(ce["type"])
        received = ReceivedEvent(
            id=ce["id"],
            type=ce["type"],
            event_type=event_type,
            schema_version=schema_version,
            source=ce["source"],
            subject=ce["subject"],
            sequence=int(ce["sequence"]),
            time=datetime.fromisoformat(ce["time"]),
            data=ce["data"],
            tenant=ce.get("tenant"),
            actor=ce.get("actor"),
            correlation_id=ce.get("correlationid"),
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        for registry in registries:
            if event_type in registry:
                typed = registry.decode(event_type, schema_version, received.data)
                return ReceivedEvent(**{**received.__dict__, "event": typed})
        return received
    except Exception as exc:  # anything malformed is a poison record, not a crash
        raise UndecodableRecord(f"{type(exc).__name__}: {exc}") from exc


class Projection(Protocol):
    """A read model fed by events. `apply` must use SQLAlchemy Core on the tables of `metadata`
    (schema READ_MODEL_SCHEMA), so that a rebuild can redirect it to a fresh schema."""

    name: str
    topics: list[str]
    metadata: MetaData

    async def apply(self, conn: AsyncConnection, event: ReceivedEvent) -> None: ...


class BatchProjection(Projection, Protocol):
    """A projection that can also write a whole batch at once (far fewer round trips than one by one).
    The runner falls back to `apply` per event, with retries and the dead-letter topic, if a batch fails."""

    async def apply_batch(self, conn: AsyncConnection, events: list[ReceivedEvent]) -> None: ...


def read_model_engine(engine: AsyncEngine, schema: str = READ_MODEL_SCHEMA) -> AsyncEngine:
    """The engine with read-model tables redirected to `schema` (the live one or a rebuild)."""
    if schema == READ_MODEL_SCHEMA:
        return engine
    return engine.execution_options(schema_translate_map={READ_MODEL_SCHEMA: schema})


async def create_read_model(engine: AsyncEngine, projection: Projection, schema: str = READ_MODEL_SCHEMA) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f'create schema if not exists "{schema}"'))
    async with read_model_engine(engine, schema).begin() as conn:
        await conn.run_sync(projection.metadata.create_all)


@dataclass
class RunnerConfig:
    bootstrap: str
    group_id: str
    dlq_topic: str
    schema: str = READ_MODEL_SCHEMA
    max_retries: int = 3
    retry_backoff_s: float = 0.1
    max_records: int = 1000
    session_timeout_ms: int = 10_000
    registries: tuple[EventRegistry, ...] = ()
    # Rebuild mode: read every partition from the beginning (no group) and stop at the end offsets.
    until_end: bool = False


@dataclass
class RunnerStats:
    applied: int = 0
    duplicates: int = 0
    parked: int = 0
    offsets: dict[TopicPartition, int] = field(default_factory=dict)


class ProjectionRunner:
    def __init__(self, engine: AsyncEngine, projection: Projection, config: RunnerConfig) -> None:
        self.projection = projection
        self.config = config
        self.engine = read_model_engine(engine, config.schema)
        # The projection's metadata must hold a processed_events_table.
        self.processed = next(t for t in projection.metadata.tables.values() if t.name == "processed_events")
        self.stats = RunnerStats()
        self._batch_lock = asyncio.Lock()
        self._dlq: AIOKafkaProducer | None = None
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> RunnerStats:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.config.bootstrap,
            group_id=None if self.config.until_end else self.config.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=self.config.session_timeout_ms,
            heartbeat_interval_ms=self.config.session_timeout_ms // 3,
        )
        await consumer.start()
        try:
            end_offsets = await self._subscribe(consumer)
            self.ready.set()
            while not stop.is_set():
                if end_offsets is not None and self._reached(consumer, end_offsets):
                    break
                batch = await consumer.getmany(timeout_ms=200, max_records=self.config.max_records)
                if batch:
                    async with self._batch_lock:
                        await self._process(consumer, batch)
                self._record_lag(consumer)
        finally:
            await consumer.stop()
            if self._dlq is not None:
                await self._dlq.stop()
        return self.stats

    async def _subscribe(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int] | None:
        if not self.config.until_end:
            consumer.subscribe(self.projection.topics, listener=_FinishBatchOnRevoke(self._batch_lock))
            return None
        partitions = []
        for topic in self.projection.topics:
            for p in await _partitions(consumer, topic):
                partitions.append(TopicPartition(topic, p))
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        return await consumer.end_offsets(partitions) if partitions else {}

    def _reached(self, consumer: AIOKafkaConsumer, end_offsets: dict[TopicPartition, int]) -> bool:
        return all(self.stats.offsets.get(tp, 0) >= end for tp, end in end_offsets.items() if end > 0) and all(
            end == 0 or tp in self.stats.offsets for tp, end in end_offsets.items())

    async def _process(self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Everything one poll returned: one transaction, then one commit of every partition's offset."""
        async with self.engine.begin() as conn:
            await self._apply_records(conn, [record for records in batch.values() for record in records])
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
        # Only after the read model committed: a crash in between means a redelivery, which is a no-op.
        if not self.config.until_end:
            await consumer.commit(offsets)
        self.stats.offsets.update(offsets)

    async def _apply_records(self, conn: AsyncConnection, records: list[ConsumerRecord]) -> None:
        """The fast path: one dedupe statement and one batch write; on any error, one by one."""
        decoded: list[tuple[ConsumerRecord, ReceivedEvent]] = []
        for record in records:
            try:
                decoded.append((record, decode_record(record, self.config.registries)))
            except UndecodableRecord as exc:
                await self._park(record, str(exc))
        if not decoded:
            return
        try:
            async with conn.begin_nested():
                fresh = await self._first_seen(conn, [event.id for _, event in decoded])
                new: list[ReceivedEvent] = []
                for _, event in decoded:  # a relay retry can repeat an event inside one batch, too
                    if event.id in fresh:
                        new.append(event)
                        fresh.discard(event.id)
                apply_batch = getattr(self.projection, "apply_batch", None)
                if apply_batch is not None:
                    await apply_batch(conn, new)
                else:
                    for event in new:
                        await self.projection.apply(conn, event)
        except Exception:  # find the culprit: per event, with retries and the dead-letter topic
            log.warning("projection %s: batch of %d failed; applying one by one", self.projection.name,
                        len(decoded), exc_info=True)
            for record, _ in decoded:
                await self._handle(conn, record)
            return
        self.stats.applied += len(new)
        self.stats.duplicates += len(decoded) - len(new)
        obs.EVENTS_APPLIED.labels(self.projection.name, "applied").inc(len(new))
        obs.EVENTS_APPLIED.labels(self.projection.name, "duplicate").inc(len(decoded) - len(new))

    async def _first_seen(self, conn: AsyncConnection, event_ids: list[str]) -> set[str]:
        """Record the ids as processed; returns those not seen before."""
        # One statement of constant shape (unnest of an array), so SQLAlchemy compiles it once.
        ids = select(literal(self.projection.name), func.unnest(bindparam("ids", type_=ARRAY(String))))
        statement = (insert(self.processed).from_select(["projection", "event_id"], ids)
                     .on_conflict_do_nothing().returning(self.processed.c.event_id))
        result = await conn.execute(statement, {"ids": list(dict.fromkeys(event_ids))})
        return set(result.scalars())

    async def _handle(self, conn: AsyncConnection, record: ConsumerRecord) -> None:
        try:
            event = decode_record(record, self.config.registries)
        except UndecodableRecord as exc:
            await self._park(record, str(exc))
            return
        error: Exception | None = None
        for attempt in range(self.config.max_retries + 1):
            try:
                async with conn.begin_nested():
                    first_time = await conn.scalar(
                        insert(self.processed)
                        .values(projection=self.projection.name, event_id=event.id)
                        .on_conflict_do_nothing()
                        .returning(self.processed.c.event_id)
                    )
                    if first_time is None:
                        self.stats.duplicates += 1
                        obs.EVENTS_APPLIED.labels(self.projection.name, "duplicate").inc()
                        return
                    await self.projection.apply(conn, event)
                self.stats.applied += 1
                obs.EVENTS_APPLIED.labels(self.projection.name, "applied").inc()
                return
            except Exception as exc:  # the handler's bug or bad data: retry, then park
                error = exc
                if attempt < self.config.max_retries:
                    await asyncio.sleep(self.config.retry_backoff_s * 2**attempt)
        await self._park(record, f"{type(error).__name__}: {error}")
        # Remember it as handled so a redelivery does not park it twice; a re-drive clears this.
        await conn.execute(
            insert(self.processed).values(projection=self.projection.name, event_id=event.id).on_conflict_do_nothing()
        )

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
                    obs.CONSUMER_LAG.labels(self.projection.name, str(tp.partition)).set(max(high - position, 0))


class _FinishBatchOnRevoke(ConsumerRebalanceListener):
    """A rebalance waits for the batch in flight to commit before the partitions move."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self.lock = lock

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.lock:
            pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    for _ in range(50):
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call for this
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        await asyncio.sleep(0.1)
    return []


async def redrive(engine: AsyncEngine, projection: Projection, config: RunnerConfig, *, limit: int = 1000) -> int:
    """Apply parked events again (after a fix): read the DLQ from the beginning, forget each id, re-apply."""
    consumer = AIOKafkaConsumer(config.dlq_topic, bootstrap_servers=config.bootstrap,
                                group_id=f"{config.group_id}.redrive", enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    runner = ProjectionRunner(engine, projection, config)
    done = 0
    try:
        batch = await consumer.getmany(timeout_ms=2000, max_records=limit)
        for tp, records in batch.items():
            async with runner.engine.begin() as conn:
                for record in records:
                    try:
                        event_id = decode_record(record, config.registries).id
                        await conn.execute(runner.processed.delete().where(
                            runner.processed.c.projection == projection.name, runner.processed.c.event_id == event_id))
                    except UndecodableRecord:
                        pass  # still unreadable: _handle parks it again
                    await runner._handle(conn, record)  # noqa: SLF001 - same path as live records
                    done += 1
            await consumer.commit({tp: records[-1].offset + 1})
    finally:
        await consumer.stop()
        if runner._dlq is not None:  # noqa: SLF001
            await runner._dlq.stop()  # noqa: SLF001
    return done
