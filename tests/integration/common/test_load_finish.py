"""What a rebuild does after its load, over real Kafka and PostgreSQL: a `KEY_AFTER_LOAD` table has no primary key
while the rows go in and has it afterwards, as a live schema has it, rebuild after rebuild; a row loaded twice then
fails the rebuild. A `DERIVED` table is written by `after_load` and finished after it (its statistics taken on its
rows). The statistics are a quick sample of the indexed columns, and leave the rest to autovacuum."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import Column, Index, Integer, MetaData, String, Table, func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError

from opsat.common.bulk import Rows, copy_rows, insert_rows, qualified_name
from opsat.common.consumer import (
    DERIVED,
    KEY_AFTER_LOAD,
    LOAD_STATISTICS_TARGET,
    QUERY_ONLY,
    ReceivedEvent,
    RunnerConfig,
    create_read_model,
    loading,
    processed_events_table,
)
from opsat.common.db import READ_MODEL_SCHEMA, create_engine
from opsat.common.projections import rebuild
from opsat.common.testing.helpers import rows

from .test_consumer_pipelining import create_topic, produce

EVENTS = 120


class Ledger:
    """An entry per event (COPY while loading) with the keys its table had when the batch wrote; `totals`, one row per
    partition, derived from the entries by `after_load` alone. With `twice`, the first event's entry goes in again
    with every batch."""

    name = "ledger"

    def __init__(self, topic: str, twice: bool = False) -> None:
        self.topics = [topic]
        self.twice = twice
        self.first: dict[str, Any] | None = None
        self.metadata = MetaData(schema=READ_MODEL_SCHEMA)
        processed_events_table(self.metadata)
        self.entries = Table("entries", self.metadata, Column("event_id", String, primary_key=True),
                             Column("part", Integer, nullable=False), Column("doc", JSONB, nullable=False),
                             Column("keys", Integer, nullable=False), Index("entries_part_idx", "part", info=QUERY_ONLY),
                             info=KEY_AFTER_LOAD)
        self.totals = Table("totals", self.metadata, Column("part", Integer, primary_key=True),
                            Column("entries", Integer, nullable=False), info={**DERIVED, **KEY_AFTER_LOAD})

    async def apply(self, conn: Any, event: ReceivedEvent) -> None:
        await self.apply_batch(conn, [event])

    async def apply_batch(self, conn: Any, events: list[ReceivedEvent]) -> None:
        keys = await conn.scalar(text("select count(*) from pg_constraint where contype = 'p'"
                                      f" and conrelid = '{qualified_name(conn, self.entries)}'::regclass"))
        entries = [{"event_id": e.id, "part": e.partition, "doc": e.data, "keys": keys} for e in events]
        self.first = self.first or entries[0]
        if self.twice and entries[0] is not self.first:
            entries.append(self.first)
        if loading(conn):
            await copy_rows(conn, Rows(self.entries, entries))
        else:
            await insert_rows(conn, self.entries, entries)

    async def after_load(self, conn: Any) -> None:
        await conn.execute(self.totals.insert().from_select(
            ["part", "entries"], select(self.entries.c.part, func.count()).group_by(self.entries.c.part)))


def _config(kafka_bootstrap: str, namespace: str) -> RunnerConfig:
    return RunnerConfig(bootstrap=kafka_bootstrap, group_id=f"{namespace}.ledger", dlq_topic=f"{namespace}.ledger.dlq",
                        rebuild_max_records=20, max_retries=0)


async def _ledger_topic(bootstrap: str, namespace: str) -> str:
    topic = await create_topic(bootstrap, f"{namespace}.ledger")
    await produce(bootstrap, topic, 0, EVENTS)
    return topic


async def _constraints(database_url: str, schema: str) -> list[tuple[str, str]]:
    return [(r["conname"], r["def"]) for r in await rows(
        database_url, "select conname, pg_get_constraintdef(oid) as def from pg_constraint"
                      " where connamespace = cast($1 as regnamespace) order by 1", schema)]


async def test_keys_after_the_load_derived_tables_after_after_load_statistics_of_indexed_columns(
        kafka_bootstrap, database_url, topic_namespace):
    topic = await _ledger_topic(kafka_bootstrap, topic_namespace)
    engine = create_engine(database_url, pool_size=4)
    try:
        for schema in ("rm_ledger_a", "rm_ledger_b"):  # twice: the keys come back in every rebuild's tables
            stats = await rebuild(engine, Ledger(topic), _config(kafka_bootstrap, topic_namespace), schema)
            assert stats.applied == EVENTS
        await create_read_model(engine, Ledger(topic))  # a live schema
        live = await _constraints(database_url, READ_MODEL_SCHEMA)
        rebuilt = {schema: await _constraints(database_url, schema) for schema in ("rm_ledger_a", "rm_ledger_b")}
        keys_seen = await rows(database_url, "select distinct keys from rm_ledger_b.entries")
        totals = await rows(database_url, "select sum(entries) as n, count(*) as parts from rm_ledger_b.totals")
        measured = await rows(database_url, "select tablename, attname, cardinality(histogram_bounds::text::text[]) as"
                                            " bounds from pg_stats where schemaname = 'rm_ledger_b'"
                                            " and tablename in ('entries', 'totals') order by 1, 2")
        unanalysed = await _changes_since_analyze(database_url, "rm_ledger_b", "entries", EVENTS)
    finally:
        await engine.dispose()
    # no primary key on `entries` while loading, and every table keyed afterwards as a live schema is
    assert [r["keys"] for r in keys_seen] == [0]
    assert ("entries_pkey", "PRIMARY KEY (event_id)") in live and ("totals_pkey", "PRIMARY KEY (part)") in live
    assert rebuilt == {"rm_ledger_a": live, "rm_ledger_b": live}
    # `totals` written by `after_load`, then analysed on its rows; each table on its key's and indexes' columns only,
    # and its count of changes left for autovacuum to analyse every column
    assert totals[0]["n"] == EVENTS and totals[0]["parts"] > 1
    assert [(r["tablename"], r["attname"]) for r in measured] == [
        ("entries", "event_id"), ("entries", "part"), ("totals", "part")]
    assert unanalysed == EVENTS
    # a quick sample: 120 distinct event ids in 11 bounds (`LOAD_STATISTICS_TARGET`), not 101
    assert [r["bounds"] for r in measured if r["attname"] == "event_id"] == [LOAD_STATISTICS_TARGET + 1]


async def _changes_since_analyze(database_url: str, schema: str, table: str, expected: int) -> int:
    """The table's `n_mod_since_analyze`, once the writers' counts reached the statistics (they flush when idle)."""
    changes = 0
    for _ in range(50):
        found = await rows(database_url, "select n_mod_since_analyze as n from pg_stat_user_tables"
                                         " where schemaname = $1 and relname = $2", schema, table)
        changes = found[0]["n"]
        if changes >= expected:
            break
        await asyncio.sleep(0.2)
    return changes


async def test_a_row_loaded_twice_into_a_table_keyed_after_the_load_fails_the_rebuild(
        kafka_bootstrap, database_url, topic_namespace):
    topic = await _ledger_topic(kafka_bootstrap, topic_namespace)
    engine = create_engine(database_url, pool_size=4)
    try:
        with pytest.raises(ExceptionGroup) as failed:  # (the tables are finished at once)
            await rebuild(engine, Ledger(topic, twice=True), _config(kafka_bootstrap, topic_namespace), "rm_twice")
        assert failed.group_contains(IntegrityError, match="entries_pkey", depth=None)
        keys = await rows(database_url, "select conname from pg_constraint where conrelid = 'rm_twice.entries'::regclass")
    finally:
        await engine.dispose()
    assert keys == []  # never keyed: a schema no one should swap in
