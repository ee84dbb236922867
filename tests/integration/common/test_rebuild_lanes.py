"""A rebuild replays a `stream_local` projection in lanes, runners at once over disjoint shares of the partitions,
and builds the `QUERY_ONLY` indexes once the rows are in. Over real Kafka and PostgreSQL: every record applied once;
each transaction holds one lane's partitions and transactions of both lanes overlap in time, while a projection that
is not stream-local is replayed by one runner whose transactions never overlap; the indexes absent while loading
and there afterwards, as a live schema has them; autovacuum off while loading, back and the statistics taken
afterwards."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, func, insert, text

from opsat.common.consumer import (
    QUERY_ONLY,
    ReceivedEvent,
    RunnerConfig,
    create_read_model,
    processed_events_table,
    stream_versions_table,
)
from opsat.common.db import READ_MODEL_SCHEMA, create_engine
from opsat.common.projections import rebuild
from opsat.common.testing.helpers import rows

from .test_consumer_pipelining import PARTITIONS, create_topic, produce


class Backends:
    """Writes each applied event with its partition, its transaction and when that transaction started and wrote
    (after a pause, so that transactions of lanes running at once overlap)."""

    name = "backends"

    def __init__(self, topic: str, stream_local: bool, seen_indexes: list[list[str]] | None = None) -> None:
        self.topics = [topic]
        self.stream_local = stream_local
        self.seen_indexes = seen_indexes
        self.seen_options: list[Any] = []  # the table's storage options, as each batch of the load saw them
        self.metadata = MetaData(schema=READ_MODEL_SCHEMA)
        processed_events_table(self.metadata)
        stream_versions_table(self.metadata)
        self.applied = Table("applied", self.metadata, Column("event_id", String, primary_key=True),
                             Column("partition", Integer, nullable=False), Column("tx", BigInteger, nullable=False),
                             Column("started", DateTime(timezone=True), nullable=False),
                             Column("wrote", DateTime(timezone=True), nullable=False),
                             Index("applied_by_tx", "tx", "partition", info=QUERY_ONLY),
                             Index("applied_by_partition", "partition"))  # not query-only: there all along

    async def apply(self, conn: Any, event: ReceivedEvent) -> None:
        await self.apply_batch(conn, [event])

    async def apply_batch(self, conn: Any, events: list[ReceivedEvent]) -> None:
        if self.seen_indexes is not None:
            result = await conn.exec_driver_sql("select indexname from pg_indexes where schemaname = 'rm_lanes'"
                                                " and tablename = 'applied' order by 1")
            self.seen_indexes.append([row[0] for row in result])
            self.seen_options.append(await conn.scalar(text(
                "select reloptions from pg_class where oid = 'rm_lanes.applied'::regclass")))
        await asyncio.sleep(0.02)
        await conn.execute(insert(self.applied).values(tx=func.txid_current(), started=func.now(),
                                                       wrote=func.clock_timestamp()),
                           [{"event_id": e.id, "partition": e.partition} for e in events])


async def _transactions(database_url: str, schema: str) -> list[Any]:
    return await rows(database_url, f"select tx, array_agg(distinct partition order by partition) as partitions,"
                                     f" min(started) as started, max(wrote) as wrote from {schema}.applied group by tx"
                                     " order by started")


def _overlapping(transactions: list[Any]) -> int:
    return sum(1 for a, b in zip(transactions, transactions[1:], strict=False) if b["started"] < a["wrote"])


def _config(kafka_bootstrap: str, namespace: str) -> RunnerConfig:
    return RunnerConfig(bootstrap=kafka_bootstrap, group_id=f"{namespace}.lanes", dlq_topic=f"{namespace}.lanes.dlq",
                        rebuild_max_records=50, rebuild_lanes=2)


async def test_a_stream_local_projection_is_rebuilt_in_two_lanes_each_record_once(
        kafka_bootstrap, database_url, topic_namespace):
    topic = await create_topic(kafka_bootstrap, f"{topic_namespace}.lanes")
    await produce(kafka_bootstrap, topic, 0, 600)
    engine = create_engine(database_url, pool_size=4)
    seen: list[list[str]] = []
    projection = Backends(topic, stream_local=True, seen_indexes=seen)
    try:
        stats = await rebuild(engine, projection, _config(kafka_bootstrap, topic_namespace), "rm_lanes")
        after = (await rows(database_url, "select c.reloptions, s.last_analyze from pg_class c join pg_stat_user_tables s"
                                          " on s.relid = c.oid where c.oid = 'rm_lanes.applied'::regclass"))[0]
        applied = await rows(database_url, "select event_id from rm_lanes.applied")
        transactions = await _transactions(database_url, "rm_lanes")
        indexes = await rows(database_url, "select indexname from pg_indexes where schemaname = 'rm_lanes'"
                                           " and tablename = 'applied' order by 1")
        await create_read_model(engine, Backends(topic, stream_local=True))  # a live schema, for its indexes
        live = await rows(database_url, "select indexname, replace(indexdef, 'read_model.', 'rm_lanes.') as d"
                                        " from pg_indexes where schemaname = 'read_model' and tablename = 'applied'"
                                        " order by 1")
        rebuilt = await rows(database_url, "select indexname, indexdef as d from pg_indexes"
                                           " where schemaname = 'rm_lanes' and tablename = 'applied' order by 1")
    finally:
        await engine.dispose()
    assert stats.applied == 600 and len(applied) == len({r["event_id"] for r in applied}) == 600
    assert {tp.partition for tp in stats.offsets} == set(range(PARTITIONS))
    # lane i of 2 reads the partitions p with p % 2 == i: no transaction mixes them, and both lanes ran
    assert all(len({p % 2 for p in t["partitions"]}) == 1 for t in transactions), transactions
    assert {t["partitions"][0] % 2 for t in transactions} == {0, 1}, transactions
    assert _overlapping(transactions) > 0, "the two lanes' transactions never ran at once"
    # while loading, the query-only index was not there; afterwards it is, as a live schema has it
    assert seen and all("applied_by_tx" not in names and "applied_by_partition" in names for names in seen), seen
    assert [r["indexname"] for r in indexes] == ["applied_by_partition", "applied_by_tx", "applied_pkey"]
    assert [dict(r) for r in rebuilt] == [dict(r) for r in live]
    # no autovacuum while loading; afterwards it is back, and the statistics were taken
    assert projection.seen_options and all(o == ["autovacuum_enabled=false"] for o in projection.seen_options)
    assert after["reloptions"] is None and after["last_analyze"] is not None


async def test_a_projection_that_is_not_stream_local_is_rebuilt_by_one_runner(
        kafka_bootstrap, database_url, topic_namespace):
    topic = await create_topic(kafka_bootstrap, f"{topic_namespace}.onelane")
    await produce(kafka_bootstrap, topic, 0, 200)
    engine = create_engine(database_url, pool_size=4)
    try:
        stats = await rebuild(engine, Backends(topic, stream_local=False), _config(kafka_bootstrap, topic_namespace),
                              "rm_onelane")
        applied = await rows(database_url, "select event_id from rm_onelane.applied")
        transactions = await _transactions(database_url, "rm_onelane")
    finally:
        await engine.dispose()
    assert stats.applied == 200 and len(applied) == 200
    assert len(transactions) > 1 and _overlapping(transactions) == 0, transactions
