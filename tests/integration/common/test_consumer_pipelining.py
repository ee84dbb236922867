"""The consumer runner fetches and decodes the next poll while the current one is in PostgreSQL. Over real Kafka
and PostgreSQL, with small polls so that one is nearly always fetched ahead: every record is applied once, each
partition in offset order, through a second member joining (a rebalance) and through a stop; offsets committed
never run ahead of what the read model holds. Offsets are committed once the interval passed, on a stop and before
partitions move; a consumer that names the events it handles is given only those; an idle one long-polls."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.consumer.fetcher import Fetcher
from sqlalchemy import BigInteger, Column, Identity, Integer, MetaData, String, Table, insert

from opsat.common.consumer import (
    ProjectionRunner,
    ReceivedEvent,
    RunnerConfig,
    create_read_model,
    processed_events_table,
)
from opsat.common.db import READ_MODEL_SCHEMA, create_engine
from opsat.common.testing.helpers import rows, scalar, wait_until

PARTITIONS = 4


class Recorder:
    """Writes each applied event with its partition and offset, in the order applied (`n`); slow on purpose,
    so that the next poll is fetched while a batch is in its transaction."""

    name = "recorder"

    def __init__(self, topic: str, member: str, pause_s: float = 0.01) -> None:
        self.topics = [topic]
        self.member = member
        self.pause_s = pause_s
        self.metadata = MetaData(schema=READ_MODEL_SCHEMA)
        processed_events_table(self.metadata)
        self.applied = Table("applied", self.metadata, Column("n", BigInteger, Identity(), primary_key=True),
                             Column("event_id", String, nullable=False), Column("partition", Integer, nullable=False),
                             Column("offset", BigInteger, nullable=False), Column("member", String, nullable=False))
        self.calls: list[str] = []  # event ids handed to apply_batch, repeats included

    async def apply(self, conn: Any, event: ReceivedEvent) -> None:
        await self.apply_batch(conn, [event])

    async def apply_batch(self, conn: Any, events: list[ReceivedEvent]) -> None:
        self.calls += [e.id for e in events]
        await asyncio.sleep(self.pause_s)
        await conn.execute(insert(self.applied), [{"event_id": e.id, "partition": e.partition, "offset": e.offset,
                                                   "member": self.member} for e in events])


def cloud_event(n: int, event_type: str = "opsat.test.thing.happened") -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": f"ev-{n:05d}-{uuid.uuid4().hex[:6]}", "source": "/opsat/test",
                         "type": f"{event_type}.v1", "subject": f"thing-{n}", "sequence": "1",
                         "time": datetime.now(UTC).isoformat(), "data": {"n": n}})


async def produce(bootstrap: str, topic: str, first: int, count: int,
                  event_type: Any = lambda n: "opsat.test.thing.happened") -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    try:
        sent = [await producer.send(topic, cloud_event(n, event_type(n)), partition=n % PARTITIONS)
                for n in range(first, first + count)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def create_topic(kafka_bootstrap: str, topic: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    return topic


async def setup(kafka_bootstrap: str, database_url: str, namespace: str) -> tuple[str, str, Any]:
    topic, group = await create_topic(kafka_bootstrap, f"{namespace}.pipelined"), f"{namespace}.recorder"
    engine = create_engine(database_url, pool_size=4)
    await create_read_model(engine, Recorder(topic, "setup"))
    return topic, group, engine


def config(kafka_bootstrap: str, group: str, **extra: Any) -> RunnerConfig:
    return RunnerConfig(bootstrap=kafka_bootstrap, group_id=group, dlq_topic=f"{group}.dlq", max_records=7,
                        session_timeout_ms=6000, **extra)


async def committed(kafka_bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


async def applied_rows(database_url: str) -> list[Any]:
    return await rows(database_url, 'select event_id, partition, "offset", member from read_model.applied order by n')


def assert_in_partition_order(applied: list[Any]) -> None:
    last: dict[int, int] = {}
    for row in applied:
        assert row["offset"] > last.get(row["partition"], -1), f"partition {row['partition']} went back: {row}"
        last[row["partition"]] = row["offset"]


async def test_every_record_is_applied_once_in_partition_order_and_offsets_follow_the_commits(
        kafka_bootstrap, database_url, topic_namespace):
    topic, group, engine = await setup(kafka_bootstrap, database_url, topic_namespace)
    await produce(kafka_bootstrap, topic, 0, 400)
    recorder = Recorder(topic, "a")
    runner = ProjectionRunner(engine, recorder, config(kafka_bootstrap, group))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await wait_until(lambda: _count(database_url, 400), timeout=60, what="400 events applied")
        await produce(kafka_bootstrap, topic, 400, 100)  # while it runs
        await wait_until(lambda: _count(database_url, 500), timeout=60, what="500 events applied")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await engine.dispose()
    applied = await applied_rows(database_url)
    assert len(applied) == len({r["event_id"] for r in applied}) == 500
    assert len(recorder.calls) == 500  # none handed to the projection twice: polls fetched ahead are applied once
    assert_in_partition_order(applied)
    ends = {p: max(r["offset"] for r in applied if r["partition"] == p) + 1 for p in range(PARTITIONS)}
    assert await committed(kafka_bootstrap, group, topic) == ends
    assert runner.stats.applied == 500


async def test_a_stop_with_a_poll_fetched_ahead_commits_only_what_was_applied_and_a_restart_applies_the_rest(
        kafka_bootstrap, database_url, topic_namespace):
    topic, group, engine = await setup(kafka_bootstrap, database_url, topic_namespace)
    await produce(kafka_bootstrap, topic, 0, 600)
    stop = asyncio.Event()
    first = ProjectionRunner(engine, Recorder(topic, "first", pause_s=0.05), config(kafka_bootstrap, group))
    task = asyncio.create_task(first.run(stop))
    try:
        await wait_until(lambda: _at_least(database_url, 60), timeout=60, what="some events applied")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    before = await applied_rows(database_url)
    assert 60 <= len(before) < 600
    applied_ends = {p: max(r["offset"] for r in before if r["partition"] == p) + 1
                    for p in {r["partition"] for r in before}}
    # Exactly what the read model holds: the poll fetched ahead at the stop was neither applied nor committed.
    assert await committed(kafka_bootstrap, group, topic) == applied_ends

    stop = asyncio.Event()
    second = ProjectionRunner(engine, Recorder(topic, "second", pause_s=0), config(kafka_bootstrap, group))
    task = asyncio.create_task(second.run(stop))
    try:
        await wait_until(lambda: _count(database_url, 600), timeout=60, what="600 events applied")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await engine.dispose()
    applied = await applied_rows(database_url)
    assert len(applied) == len({r["event_id"] for r in applied}) == 600
    assert_in_partition_order(applied)
    assert second.stats.duplicates == 0  # it started where the first one's commits said, not before


async def test_a_member_joining_mid_stream_loses_nothing_and_keeps_each_partition_in_order(
        kafka_bootstrap, database_url, topic_namespace):
    topic, group, engine = await setup(kafka_bootstrap, database_url, topic_namespace)
    await produce(kafka_bootstrap, topic, 0, 1200)
    stop = asyncio.Event()
    runners = [ProjectionRunner(engine, Recorder(topic, member, pause_s=0.05), config(kafka_bootstrap, group))
               for member in ("a", "b")]
    tasks = [asyncio.create_task(runners[0].run(stop))]
    try:
        await wait_until(lambda: _at_least(database_url, 80), timeout=60, what="the first member under way")
        tasks.append(asyncio.create_task(runners[1].run(stop)))
        await wait_until(lambda: _count(database_url, 1200), timeout=120, what="1200 events applied")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
        await engine.dispose()
    applied = await applied_rows(database_url)
    assert len(applied) == len({r["event_id"] for r in applied}) == 1200
    assert {r["member"] for r in applied} == {"a", "b"}, "the second member took partitions over"
    assert_in_partition_order(applied)
    assert await committed(kafka_bootstrap, group, topic) == {
        p: max(r["offset"] for r in applied if r["partition"] == p) + 1 for p in range(PARTITIONS)}
    assert runners[0].generation >= 2  # the first member saw the rebalance (revoked, then assigned again)


async def _count(database_url: str, n: int) -> bool:
    return await scalar(database_url, "select count(*) from read_model.applied") == n


async def _at_least(database_url: str, n: int) -> bool:
    return await scalar(database_url, "select count(*) from read_model.applied") >= n


async def test_offsets_are_committed_once_the_interval_passed_and_on_stop(kafka_bootstrap, database_url,
                                                                         topic_namespace):
    topic, group, engine = await setup(kafka_bootstrap, database_url, topic_namespace)
    await produce(kafka_bootstrap, topic, 0, 200)
    stop = asyncio.Event()
    runner = ProjectionRunner(engine, Recorder(topic, "a", pause_s=0), config(kafka_bootstrap, group,
                                                                               commit_interval_s=60))
    task = asyncio.create_task(runner.run(stop))
    try:
        await wait_until(lambda: _count(database_url, 200), timeout=60, what="200 events applied")
        assert await committed(kafka_bootstrap, group, topic) == {}  # applied, not yet committed: the interval
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await engine.dispose()
    assert await committed(kafka_bootstrap, group, topic) == {p: 50 for p in range(PARTITIONS)}  # on stop


async def test_a_rebalance_commits_what_the_moving_partitions_applied_before_they_move(
        kafka_bootstrap, database_url, topic_namespace):
    topic, group, engine = await setup(kafka_bootstrap, database_url, topic_namespace)
    await produce(kafka_bootstrap, topic, 0, 600)
    stop = asyncio.Event()
    runners = [ProjectionRunner(engine, Recorder(topic, member, pause_s=0.05),
                                config(kafka_bootstrap, group, commit_interval_s=60)) for member in ("a", "b")]
    tasks = [asyncio.create_task(runners[0].run(stop))]
    try:
        await wait_until(lambda: _at_least(database_url, 80), timeout=60, what="the first member under way")
        tasks.append(asyncio.create_task(runners[1].run(stop)))
        await wait_until(lambda: _count(database_url, 600), timeout=120, what="600 events applied")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
        await engine.dispose()
    applied = await applied_rows(database_url)
    assert {r["member"] for r in applied} == {"a", "b"}, "the second member took partitions over"
    # The partitions moved with their applied offsets committed (the interval had not passed): the new owner
    # started after them, so nothing was delivered to it twice.
    assert runners[1].stats.duplicates == 0
    assert runners[0].stats.applied + runners[1].stats.applied == 600


class KeptOnly(Recorder):
    """A consumer that acts on one event type only."""

    class Kept:
        event_type = "opsat.test.thing.kept"

    handles = (Kept,)


async def test_a_consumer_is_given_only_the_events_it_handles_and_its_offsets_pass_the_others(
        kafka_bootstrap, database_url, topic_namespace):
    topic, group, engine = await setup(kafka_bootstrap, database_url, topic_namespace)
    await produce(kafka_bootstrap, topic, 0, 300,
                  lambda n: "opsat.test.thing.kept" if n % 3 == 0 else "opsat.test.thing.other")
    stop = asyncio.Event()
    runner = ProjectionRunner(engine, KeptOnly(topic, "a", pause_s=0), config(kafka_bootstrap, group))
    task = asyncio.create_task(runner.run(stop))
    try:
        await wait_until(lambda: _count(database_url, 100), timeout=60, what="the kept events applied")
        await wait_until(lambda: _stats_seen(runner, 300), timeout=30, what="every record seen")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await engine.dispose()
    applied = await applied_rows(database_url)
    assert len(applied) == 100 and all(int(r["event_id"][3:8]) % 3 == 0 for r in applied)
    assert runner.stats.applied == 100 and runner.stats.ignored == 200
    # The others cost nothing in PostgreSQL: not even a processed id.
    assert await scalar(database_url, "select count(*) from read_model.processed_events") == 100
    assert await committed(kafka_bootstrap, group, topic) == {p: 75 for p in range(PARTITIONS)}


async def _stats_seen(runner: ProjectionRunner, n: int) -> bool:
    return runner.stats.applied + runner.stats.ignored >= n


async def test_an_idle_consumer_long_polls_and_the_first_record_of_a_quiet_spell_is_not_held_back(
        kafka_bootstrap, database_url, topic_namespace, monkeypatch):
    topic, group, engine = await setup(kafka_bootstrap, database_url, topic_namespace)
    fetches: list[float] = []  # when each fetch request was sent, by any runner of this test
    send_fetch = Fetcher._proc_fetch_request

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        fetches.append(asyncio.get_running_loop().time())
        return await send_fetch(self, *args, **kwargs)

    monkeypatch.setattr(Fetcher, "_proc_fetch_request", counted)
    # Batching fetches wait 25 ms; an idle one waits up to 8 s, but is answered as soon as a record arrives.
    runner = ProjectionRunner(engine, Recorder(topic, "a", pause_s=0),
                              config(kafka_bootstrap, group, idle_fetch_max_wait_ms=8000))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await asyncio.wait_for(runner.ready.wait(), 30)
        await produce(kafka_bootstrap, topic, 0, 40)
        await wait_until(lambda: _count(database_url, 40), timeout=30, what="40 events applied")
        await asyncio.sleep(1.0)  # the polls find nothing more: the runner goes idle
        quiet_from = asyncio.get_running_loop().time()
        await asyncio.sleep(3.0)
        idle_fetches = len([t for t in fetches if t >= quiet_from])
        # Before: one fetch per 25 ms wait, about 120 in 3 s. Now: a long poll in flight, another after 8 s.
        assert idle_fetches <= 2, idle_fetches
        sent = asyncio.get_running_loop().time()
        await produce(kafka_bootstrap, topic, 40, 1)
        await wait_until(lambda: _count(database_url, 41), timeout=30, what="the 41st event applied")
        assert asyncio.get_running_loop().time() - sent < 6.0  # answered at the record, not after the 8 s wait
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await engine.dispose()
