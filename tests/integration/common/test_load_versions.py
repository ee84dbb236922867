"""A rebuild's load keeps its stream versions in memory and writes them once at the end (`_LoadedVersions`). Over real
Kafka and PostgreSQL, a topic with repeats (a relay retry's same event, an older version after a newer one) and a
record the projection refuses: each stream's versions applied once and in order, the repeats skipped, the refused
event's version not counted (its batch was rolled back), and `stream_versions` as a live runner leaves it, keyed; the
same when the memory limit is passed mid-load and the table takes over (keyed then, by whichever lane comes first),
even when the transaction that writes the versions there fails on a transient fault and is run again."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import Column, Integer, MetaData, String, Table, exists, insert, select, text

from opsat.common.consumer import (
    ProjectionRunner,
    ReceivedEvent,
    RunnerConfig,
    create_read_model,
    processed_events_table,
    stream_versions_table,
)
from opsat.common.db import READ_MODEL_SCHEMA, create_engine
from opsat.common.projections import rebuild
from opsat.common.testing.helpers import rows

from .test_consumer_pipelining import PARTITIONS, create_topic

STREAMS = 40
VERSIONS = 5
REFUSED = ("thing-7", 3)  # (stream, version) the projection refuses every time


class Versions:
    """Writes each applied event's stream and version; refuses one of them (a poison record). With `fail_once`, the
    first transaction that writes `stream_versions` rows before handing a batch over fails on a transient fault."""

    name = "versions"
    stream_local = True

    def __init__(self, topic: str, fail_once: bool = False) -> None:
        self.topics = [topic]
        self.fail_once = fail_once
        self.metadata = MetaData(schema=READ_MODEL_SCHEMA)
        processed_events_table(self.metadata)
        self.versions = stream_versions_table(self.metadata)
        self.applied = Table("applied", self.metadata, Column("event_id", String, primary_key=True),
                             Column("stream_id", String, nullable=False), Column("version", Integer, nullable=False))

    async def apply(self, conn: Any, event: ReceivedEvent) -> None:
        await self.apply_batch(conn, [event])

    async def apply_batch(self, conn: Any, events: list[ReceivedEvent]) -> None:
        if self.fail_once and await conn.scalar(select(exists().where(
                self.versions.c.projection == self.name, text("xmin = pg_current_xact_id()::xid")))):
            self.fail_once = False  # a serialization failure: transient, the batch is rolled back and run again
            await conn.exec_driver_sql("do $$ begin raise exception 'injected' using errcode = '40001'; end $$")
        if any((e.subject, e.sequence) == REFUSED for e in events):
            raise ValueError("refused")
        await conn.execute(insert(self.applied), [{"event_id": e.id, "stream_id": e.subject, "version": e.sequence}
                                                  for e in events])


def _event(stream: int, version: int, event_id: str | None = None) -> tuple[str, bytes]:
    event_id = event_id or f"{stream}-{version}-{uuid.uuid4().hex[:8]}"
    return event_id, orjson.dumps({
        "specversion": "1.0", "id": event_id, "source": "/opsat/test", "type": "opsat.test.thing.happened.v1",
        "subject": f"thing-{stream}", "sequence": str(version), "time": datetime.now(UTC).isoformat(), "data": {}})


async def _history(bootstrap: str, topic: str) -> int:
    """Every stream's versions 1..VERSIONS in its own partition, each stream's version 2 sent again after its 3 (the
    same event: a relay retry) and its version 1 again at the end (another id: an older event). Returns the records."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    sent = 0
    try:
        for stream in range(STREAMS):
            partition = stream % PARTITIONS
            ids = {}
            for version in range(1, VERSIONS + 1):
                ids[version], value = _event(stream, version)
                await producer.send(topic, value, partition=partition)
                if version == 3:
                    await producer.send(topic, _event(stream, 2, ids[2])[1], partition=partition)
            await producer.send(topic, _event(stream, 1)[1], partition=partition)
            sent += VERSIONS + 2
        await producer.flush()
    finally:
        await producer.stop()
    return sent


@pytest.mark.parametrize("in_memory", [1_000_000, 7], ids=["in-memory", "past-the-limit"])
async def test_a_load_applies_each_version_once_and_leaves_the_versions_a_live_runner_would(
        kafka_bootstrap, database_url, topic_namespace, in_memory, caplog):
    caplog.set_level(logging.INFO, "opsat.common.consumer")
    topic = await create_topic(kafka_bootstrap, f"{topic_namespace}.loadversions")
    records = await _history(kafka_bootstrap, topic)
    config = RunnerConfig(bootstrap=kafka_bootstrap, group_id=f"{topic_namespace}.lv", dlq_topic=f"{topic_namespace}"
                          ".lv.dlq", rebuild_max_records=9, retry_backoff_s=0.001, max_retries=0,
                          load_versions_in_memory=in_memory,
                          rebuild_lane_processes=False)  # in this process: one fault over both lanes, logs read here
    engine = create_engine(database_url, pool_size=4)
    try:
        stats = await rebuild(engine, Versions(topic, fail_once=True), config, "rm_loadversions")
        applied = await rows(database_url, "select stream_id, version from rm_loadversions.applied")
        versions = await rows(database_url, "select source, stream_id, version from rm_loadversions.stream_versions")
        keys = await rows(database_url, "select pg_get_constraintdef(oid) as d from pg_constraint"
                                        " where conrelid = 'rm_loadversions.stream_versions'::regclass")
        # The same topic through a live runner (versions read and moved in the table all along), for comparison.
        await create_read_model(engine, Versions(topic), "rm_loadversions_live")
        live = ProjectionRunner(engine, Versions(topic), RunnerConfig(
            bootstrap=kafka_bootstrap, group_id=f"{topic_namespace}.lvlive", dlq_topic=f"{topic_namespace}.lv.dlq",
            schema="rm_loadversions_live", until_end=True, rebuild_max_records=9, retry_backoff_s=0.001,
            max_retries=0))
        live_stats = await live.run(asyncio.Event())
        live_versions = await rows(database_url, "select source, stream_id, version"
                                                 " from rm_loadversions_live.stream_versions")
    finally:
        await engine.dispose()

    expected = sorted((f"thing-{s}", v) for s in range(STREAMS) for v in range(1, VERSIONS + 1)
                      if (f"thing-{s}", v) != REFUSED)
    assert sorted((r["stream_id"], r["version"]) for r in applied) == expected  # once each, the repeats skipped
    assert stats.applied == len(expected) and stats.parked == 1
    assert stats.duplicates == records - len(expected) - 1
    assert sorted((r["stream_id"], r["version"]) for r in versions) == [
        (f"thing-{s}", VERSIONS) for s in sorted(range(STREAMS), key=lambda s: f"thing-{s}")]
    assert {r["source"] for r in versions} == {"/opsat/test"}
    # keyed after the load, or (past the limit) when the table took over: by the first lane there, once
    assert [r["d"] for r in keys] == ["PRIMARY KEY (stream_id, source, projection)"]
    assert sorted(map(tuple, versions)) == sorted(map(tuple, live_versions))
    assert (live_stats.applied, live_stats.parked) == (stats.applied, stats.parked)
    spilled = [r for r in caplog.records if "written mid-load" in r.getMessage()]
    # once per lane, then the table; the first of them rolled back by the fault and written again
    assert len(spilled) == (3 if in_memory < STREAMS else 0), spilled
    assert stats.retries == (1 if in_memory < STREAMS else 0)
