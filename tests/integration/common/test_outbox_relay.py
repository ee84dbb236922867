"""The outbox relay against real PostgreSQL and Kafka: every event exactly once, in order per stream,
even when transactions commit out of position order while the relay is running."""

from __future__ import annotations

import asyncio
import gc
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterator

import asyncpg
import pytest
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from opsat.common import outbox
from opsat.common.collector import GC_YOUNG_THRESHOLD
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


# --- one record batch per partition ---------------------------------------------------------------------------------

_BACKLOG = """
    with appended as (
        insert into events (stream_id, stream_type, version, event_id, event_type, schema_version, data, metadata)
        select 's' || s, 'thing', v, gen_random_uuid(), 'opsat.test.ticked', 1,
               jsonb_build_object('n', v, 'pad', repeat('x', $3::int)), '{"actor": "t", "tenant": "t"}'
        from generate_series(1, $2::int) v, generate_series(1, $1::int) s
        order by v, s
        returning position
    )
    insert into outbox (position) select position from appended
"""


async def _backlog(database_url: str, streams: int, versions: int, pad: int = 100) -> None:
    """streams x versions events straight into events + outbox, the streams interleaved in position order."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(_BACKLOG, streams, versions, pad)
    finally:
        await conn.close()


async def _outbox_positions(database_url: str) -> set[int]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return {r["position"] for r in await conn.fetch("select position from outbox")}
    finally:
        await conn.close()


async def _stored(database_url: str) -> dict[str, tuple[int, str, int]]:
    """event id -> (position, stream, version)."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch("select event_id::text as id, position, stream_id, version from events")
    finally:
        await conn.close()
    return {r["id"]: (r["position"], r["stream_id"], r["version"]) for r in rows}


def _first_copies_per_stream(records) -> dict[str, list[int]]:
    """Each stream's versions in topic order ((partition, offset)), a repeated event counted at its first copy."""
    seen: set[str] = set()
    by_stream: dict[str, list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = json.loads(record.value)
        if event["id"] not in seen:
            seen.add(event["id"])
            by_stream[event["subject"]].append(int(event["sequence"]))
    return by_stream


async def test_batches_put_every_event_once_in_stream_order_on_the_producers_partition(
        database_url, kafka_bootstrap, topic_namespace):
    await platform_database(database_url)
    topic = f"{topic_namespace}.test.events"
    await ensure_topics(kafka_bootstrap, {topic: 3})
    # ~1.2 KB events, 2,000 a fetch: ~0.8 MB per partition per fetch, so each partition needs several record batches
    # (256 KB at most), and the second fetch is queued while the first is in flight.
    await _backlog(database_url, streams=60, versions=60, pad=1_100)
    relay = OutboxRelay(RelayConfig(database_url=database_url, bootstrap=kafka_bootstrap, topic=topic,
                                    source="/opsat/test", batch_size=2_000))
    thresholds: list[int] = []  # the collector's young threshold while each fetch is built and sent
    send = relay._send  # noqa: SLF001

    async def recording_send(rows):
        thresholds.append(gc.get_threshold()[0])
        return await send(rows)

    relay._send = recording_send  # noqa: SLF001
    before = gc.get_threshold()
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        assert await relay.drain(conn) == 3_600
    finally:
        await relay.close()
        await conn.close()
    assert await _outbox_positions(database_url) == set()
    # a drain holds the cyclic collector back, as consumers do (a third more events a second), and gives it back
    assert len(thresholds) >= 2 and set(thresholds) == {GC_YOUNG_THRESHOLD}
    assert gc.get_threshold() == before

    stored = await _stored(database_url)
    records = await consume_all(kafka_bootstrap, topic, min_count=len(stored))
    ids = [json.loads(r.value)["id"] for r in records]
    assert len(ids) == len(set(ids)) == len(stored) == 3_600  # each event exactly once
    assert set(ids) == set(stored)
    by_stream = _first_copies_per_stream(records)
    assert len(by_stream) == 60
    for stream, versions in by_stream.items():
        assert versions == list(range(1, 61)), stream
    producers_choice = DefaultPartitioner()
    for record in records:  # where the producer's own partitioner puts key = stream id
        assert record.key == json.loads(record.value)["subject"].encode()
        assert record.partition == producers_choice(record.key, [0, 1, 2], [0, 1, 2])
    assert {r.partition for r in records} == {0, 1, 2}
    event = json.loads(records[0].value)
    assert event["data"]["pad"] == "x" * 1_100 and event["data"]["n"] == stored[event["id"]][2]
    assert dict(records[0].headers)["id"] == event["id"].encode()


async def test_a_batch_the_broker_rejects_keeps_it_and_every_later_row_in_the_outbox(
        database_url, kafka_bootstrap, topic_namespace, kafka_admin):
    """A failure in the middle of a fetch: the rows before the first unacknowledged one leave the outbox, that
    row and every later one (even those of other partitions that Kafka did take) stay, to be sent again."""
    await platform_database(database_url)
    topic = f"{topic_namespace}.test.events"
    await kafka_admin.create_topics([NewTopic(topic, 2, 1, topic_configs={"max.message.bytes": "100000"})])
    await _backlog(database_url, streams=20, versions=3)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:  # an event too large for the topic, between two rounds of the others
        big = await conn.fetchval("""
            with e as (insert into events (stream_id, stream_type, version, event_id, event_type, schema_version,
                                           data, metadata)
                       values ('big', 'thing', 1, gen_random_uuid(), 'opsat.test.ticked', 1,
                               jsonb_build_object('pad', repeat('x', 300000)), '{}')
                       returning position)
            insert into outbox select position from e returning position""")
        await conn.execute("""
            with e as (insert into events (stream_id, stream_type, version, event_id, event_type, schema_version,
                                           data, metadata)
                       select 's' || s, 'thing', 4, gen_random_uuid(), 'opsat.test.ticked', 1, '{"n": 4}', '{}'
                       from generate_series(1, 20) s order by s
                       returning position)
            insert into outbox select position from e""")
        relay = OutboxRelay(RelayConfig(database_url=database_url, bootstrap=kafka_bootstrap, topic=topic,
                                        source="/opsat/test", batch_size=500, delivery_timeout_s=5))
        try:
            with pytest.raises(KafkaError):
                await relay.drain(conn)
            assert relay.published == 60
        finally:
            await relay.close()
    finally:
        await conn.close()
    stored = await _stored(database_url)
    assert await _outbox_positions(database_url) == {p for p, _, _ in stored.values() if p >= big}
    on_topic = {json.loads(r.value)["id"] for r in await consume_all(kafka_bootstrap, topic, min_count=60)}
    assert {i for i, (p, _, _) in stored.items() if p < big} <= on_topic  # what left the outbox is on the topic
    assert not any(stored[i][1] == "big" for i in on_topic)


async def test_a_broker_crash_mid_drain_deletes_only_acknowledged_rows(database_url, kafka_bootstrap,
                                                                       topic_namespace, local_infra):
    await platform_database(database_url)
    topic = f"{topic_namespace}.test.events"
    await ensure_topics(kafka_bootstrap, {topic: 3})
    await _backlog(database_url, streams=300, versions=100)
    total = 30_000
    config = RelayConfig(database_url=database_url, bootstrap=kafka_bootstrap, topic=topic, source="/opsat/test",
                         batch_size=2_000, request_timeout_ms=3_000, delivery_timeout_s=4)
    relay = OutboxRelay(config)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        draining = asyncio.create_task(relay.drain(conn))
        while len(await _outbox_positions(database_url)) > total - 4_000:  # a few fetches acknowledged
            assert not draining.done()
            await asyncio.sleep(0.02)
        await asyncio.to_thread(local_infra.kill_kafka)
        try:
            with pytest.raises(KafkaError):
                await asyncio.wait_for(draining, timeout=60)
            await relay.close()
            left = await _outbox_positions(database_url)
            assert 0 < len(left) < total
        finally:
            await local_infra.start_kafka_async()
        stored = await _stored(database_url)
        acknowledged = {i for i, (p, _, _) in stored.items() if p not in left}
        on_topic = {json.loads(r.value)["id"] for r in await consume_all(kafka_bootstrap, topic,
                                                                          min_count=len(acknowledged), timeout=60)}
        assert acknowledged <= on_topic  # a row leaves the outbox only once Kafka has its event

        relay = OutboxRelay(config)  # the relay's next round, with the broker back
        await relay.drain(conn)
        await relay.close()
    finally:
        await conn.close()
    assert await _outbox_positions(database_url) == set()
    records = await consume_all(kafka_bootstrap, topic, min_count=total, timeout=60)
    ids = [json.loads(r.value)["id"] for r in records]
    assert set(ids) == set(stored)  # every event
    repeated = {i for i, n in Counter(ids).items() if n > 1}
    assert all(stored[i][0] in left for i in repeated)  # only unacknowledged rows went out twice
    for stream, versions in _first_copies_per_stream(records).items():
        assert versions == list(range(1, 101)), stream


async def test_a_relay_woken_from_idle_lingers_so_that_the_next_commits_share_the_publish(
        database_url, kafka_bootstrap, topic_namespace):
    await platform_database(database_url)
    topic = f"{topic_namespace}.linger.events"
    await ensure_topics(kafka_bootstrap, {topic: 1})
    engine = create_engine(database_url)
    store = EventStore(engine, EventRegistry("test", [Ticked]))
    meta = EventMetadata(actor="t", tenant="t", correlation_id="c")
    relay = OutboxRelay(RelayConfig(database_url=database_url, bootstrap=kafka_bootstrap, topic=topic,
                                    source="/opsat/test", poll_interval_s=5, linger_s=0.5))
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        for _ in range(200):
            if relay.is_leader:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # its first (empty) drain done: idle, waiting for a commit
        await store.append("first", "thing", 0, [Ticked(n=1)], meta)
        await asyncio.sleep(0.2)
        second_committed_at = time.time()
        await store.append("second", "thing", 0, [Ticked(n=2)], meta)
        for _ in range(200):
            if await scalar(database_url, "select count(*) from outbox") == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        await engine.dispose()
    records = {json.loads(r.value)["subject"]: r for r in await consume_all(kafka_bootstrap, topic, min_count=2)}
    # The first commit woke the relay, which waited for the second before publishing: both left together.
    assert records["first"].timestamp / 1000 >= second_committed_at - 0.01
    assert abs(records["first"].timestamp - records["second"].timestamp) < 100


async def test_a_fetch_deep_into_a_backlog_reads_its_own_rows_only(database_url):
    """The statement a drain runs (settle the acknowledged, read the next rows), 15,000 events into a backlog of
    40,000: each fetched row's event by key, not the events relayed before nor the whole store."""
    await platform_database(database_url)
    await _backlog(database_url, streams=200, versions=200, pad=10)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        positions = sorted(await _outbox_positions(database_url))
        await conn.execute("delete from outbox where position = any($1::bigint[])", positions[:15_000])
        await conn.execute("analyze outbox; analyze events")
        acked, in_flight = positions[15_000:17_000], positions[17_000:19_000]  # fetches of 2,000, as the relay's
        args = (2_000, acked + in_flight, acked, min(acked), max(acked))
        plan = json.loads(await conn.fetchval("explain (analyze, format json) " + outbox._SETTLE_AND_PENDING, *args))
        rows = await conn.fetch(outbox._PENDING, 2_000, in_flight)
    finally:
        await conn.close()
    scans = list(_plan_nodes(plan[0]["Plan"]))
    events = [(n["Node Type"], (n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"])
              for n in scans if n.get("Relation Name") == "events"]
    assert events == [("Index Scan", 2_000)], events  # the events fetched, none relayed before
    assert [r["position"] for r in rows] == positions[19_000:21_000]  # the acknowledged left, in position order


def _plan_nodes(node: dict) -> Iterator[dict]:
    yield node
    for child in node.get("Plans", ()):
        yield from _plan_nodes(child)
