"""The outbox relay against real PostgreSQL and Kafka: every event exactly once, in order per stream,
even when transactions commit out of position order while the relay is running."""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict

import asyncpg

from opsat.common.db import PLATFORM_DDL_V1, asyncpg_dsn, create_engine
from opsat.common.domain import DomainEvent
from opsat.common.envelope import EventMetadata, EventRegistry
from opsat.common.eventstore import ConcurrencyConflict, EventStore
from opsat.common.kafka import ensure_topics
from opsat.common.outbox import OutboxRelay, RelayConfig
from opsat.common.testing.helpers import scalar
from opsat.common.testing.infra import consume_all


class Ticked(DomainEvent):
    event_type = "opsat.test.ticked"
    n: int


async def platform_database(database_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        for statement in PLATFORM_DDL_V1:
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_concurrent_appends_are_published_once_in_stream_order(database_url, kafka_bootstrap, topic_namespace):
    await platform_database(database_url)
    topic = f"{topic_namespace}.test.events"
    await ensure_topics(kafka_bootstrap, {topic: 3})
    engine = create_engine(database_url, pool_size=16)
    store = EventStore(engine, EventRegistry("test", [Ticked]))
    meta = EventMetadata(actor="t", tenant="t", correlation_id="c")
    streams = [f"s{i}" for i in range(40)]
    versions = defaultdict(int)
    appended = 0

    async def writer(seed: int) -> None:
        nonlocal appended
        rnd = random.Random(seed)
        for _ in range(25):
            stream = rnd.choice(streams)
            batch = [Ticked(n=i) for i in range(rnd.randint(1, 3))]
            try:  # many writers share few streams: conflicts are expected and must lose nothing
                result = await store.append(stream, "thing", versions[stream], batch, meta)
                versions[stream] = result.version
                appended += len(batch)
            except ConcurrencyConflict:
                versions[stream] = await store.stream_version(stream)

    relay = OutboxRelay(RelayConfig(database_url=database_url, bootstrap=kafka_bootstrap, topic=topic,
                                    source="/opsat/test", batch_size=50, poll_interval_s=0.05))
    stop = asyncio.Event()
    relay_task = asyncio.create_task(relay.run(stop))
    await asyncio.gather(*(writer(seed) for seed in range(16)))
    for _ in range(200):  # the relay runs concurrently with the writers; let it finish the tail
        if await scalar(database_url, "select count(*) from outbox") == 0:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await relay_task
    await engine.dispose()

    stored = await scalar(database_url, "select count(*) from events")
    assert stored == appended > 300
    records = await consume_all(kafka_bootstrap, topic, min_count=stored)
    ids = [json.loads(r.value)["id"] for r in records]
    assert len(ids) == len(set(ids)) == stored  # each event exactly once
    by_stream: dict[str, list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = json.loads(record.value)
        by_stream[event["subject"]].append(int(event["sequence"]))
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    heads = dict(await conn.fetch("select stream_id, max(version) from events group by stream_id"))
    await conn.close()
    assert set(by_stream) == set(heads)
    for stream, sequence in by_stream.items():
        assert sequence == list(range(1, heads[stream] + 1)), stream  # complete, in order, no gaps


async def test_an_event_committed_after_a_later_position_is_still_published(database_url, kafka_bootstrap,
                                                                             topic_namespace):
    """The classic bug: position 1 commits after position 2 was published. 'Highest seen' would skip it."""
    await platform_database(database_url)
    topic = f"{topic_namespace}.test.events"
    await ensure_topics(kafka_bootstrap, {topic: 1})
    insert = """
        with e as (insert into events (stream_id, stream_type, version, event_id, event_type, schema_version,
                                       data, metadata)
                   values ($1, 'thing', 1, gen_random_uuid(), 'opsat.test.ticked', 1, '{"n": 1}', '{}')
                   returning position)
        insert into outbox select position from e returning position"""
    slow = await asyncpg.connect(asyncpg_dsn(database_url))
    fast = await asyncpg.connect(asyncpg_dsn(database_url))
    relay_conn = await asyncpg.connect(asyncpg_dsn(database_url))
    relay = OutboxRelay(RelayConfig(database_url=database_url, bootstrap=kafka_bootstrap, topic=topic,
                                    source="/opsat/test"))
    try:
        tx = slow.transaction()
        await tx.start()
        slow_position = await slow.fetchval(insert, "late")  # takes position 1, not yet visible
        fast_position = await fast.fetchval(insert, "early")  # position 2, committed at once
        assert slow_position < fast_position
        assert await relay.drain(relay_conn) == 1  # only the visible one
        await tx.commit()
        assert await relay.drain(relay_conn) == 1  # the late one is not skipped
    finally:
        await relay.close()
        for conn in (slow, fast, relay_conn):
            await conn.close()
    subjects = [json.loads(r.value)["subject"] for r in await consume_all(kafka_bootstrap, topic, min_count=2)]
    assert subjects == ["early", "late"]
