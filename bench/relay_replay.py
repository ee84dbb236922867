"""(3) Relay catch-up on a 100k-event backlog and (4) projection replay of that topic, in this process.

Backlog: 100,000 valid RequestSubmitted events written straight into `events` + `outbox` with one
server-side INSERT ... SELECT generate_series (the same columns and JSON shape EventStore.append
writes; one row is decoded back through the event registry to prove it). Then
`OutboxRelay.drain(conn)` is timed until the outbox is empty, once per relay batch size, each into
its own topic (6 partitions, as the worker creates it). Splits: the pending-rows query, building the
Kafka messages (`_message`), and the relay's send path (record batches built, queued, acknowledged), per event.

Replay: `opsat.common.projections.rebuild(engine, RequestsProjection(topic), runner_config(...),
schema)` over the batch-2000 topic, watched by counting its `requests` rows (one per event); stopped at a
time cap if it would overrun the bench's budget (the rate is then measured over what it applied).
Beside it: the aiokafka consumer's own rate on the same topic (getmany, no processing) and the cost
of `decode_record` alone.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC
from typing import Any

import asyncpg
from common import (
    Bench,
    CpuMeter,
    Result,
    count_roundtrips,
    kafka_pid,
    own_cpu_seconds,
    postgres_cpu_seconds,
    r,
    uuid7_sql,
)

EVENTS = 100_000


def _sample_event_json() -> str:
    from datetime import datetime

    from opsat.intake.domain.events import RequestSubmitted
    from opsat.intake.domain.values import Channel, Priority, RequestKind

    return RequestSubmitted(
        request_id="template", at=datetime.now(UTC), by="bench-user", kind=RequestKind.incident,
        channel=Channel.portal, title="template", description="Backlog event for the relay benchmark. " * 4,
        impact=2, urgency=2, priority=Priority.P2, requester_id="bench-user", organisation_id="bench-org",
        service="mail").model_dump_json()


# Ids as the product makes them (time-ordered, `opsat.common.ids`), in the order the requests were submitted.
_FILL = f"""
    with ids as (
        select g, {uuid7_sql()}::text as id from generate_series(1, $1::int) g
    ), appended as (
        insert into events (stream_id, stream_type, version, event_id, event_type, schema_version, data, metadata)
        select id, 'request', 1, {uuid7_sql()}, 'opsat.intake.request.submitted', 1,
               $2::jsonb || jsonb_build_object('request_id', id, 'title', 'bench request ' || g), $3::jsonb
        from ids order by g
        returning position
    )
    insert into outbox (position) select position from appended
"""


async def fill_backlog(dsn: str, n: int) -> dict[str, Any]:
    from opsat.intake.service import SERVICE

    registry = SERVICE.registry

    conn = await asyncpg.connect(dsn)
    try:
        t = time.perf_counter()
        await conn.execute(_FILL, n, _sample_event_json(),
                           json.dumps({"actor": "bench-user", "tenant": "bench-org", "correlation_id": "bench"}))
        elapsed = time.perf_counter() - t
        row = await conn.fetchrow("select e.event_type, e.schema_version, e.data::text as data from outbox o"
                                  " join events e using (position) order by o.position desc limit 1")
        registry().decode(row["event_type"], row["schema_version"], json.loads(row["data"]))  # valid event
        pending = await conn.fetchval("select count(*) from outbox")
    finally:
        await conn.close()
    return {"rows": n, "insert_s": r(elapsed), "outbox_rows": pending}


async def _topic_size(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from opsat.common.kafka import topic_partitions

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in await topic_partitions(consumer, topic)]
        ends = await consumer.end_offsets(parts)
        begins = await consumer.beginning_offsets(parts)
        return sum(ends[p] - begins[p] for p in parts)
    finally:
        await consumer.stop()


async def relay_split(relay: Any, conn: asyncpg.Connection, bootstrap: str, scratch_topic: str,
                      batch: int) -> dict[str, Any]:
    """Per-event cost of the relay's parts on one batch, with the outbox full (before draining): the pending
    query, the messages alone, and the relay's own send path (messages, partitions, record batches built and
    queued, then acknowledged) into a scratch topic."""
    from dataclasses import replace

    from opsat.common.outbox import _PENDING, OutboxRelay

    t = time.perf_counter()
    rows = await conn.fetch(_PENDING, batch, [])
    fetch = time.perf_counter() - t
    t = time.perf_counter()
    messages = [relay._message(row) for row in rows]  # noqa: SLF001 - the relay's own encoding
    build = time.perf_counter() - t
    scratch = OutboxRelay(replace(relay.config, topic=scratch_topic))
    try:
        await asyncio.wait(await scratch._send(rows[:200]))  # noqa: SLF001 - warm: metadata, connections
        t = time.perf_counter()
        futures = await scratch._send(rows)  # noqa: SLF001 - the relay's send path
        enqueue = time.perf_counter() - t
        await asyncio.wait(futures)
        send = time.perf_counter() - t
    finally:
        await scratch.close()
    n = len(rows)
    avg_bytes = sum(len(m["value"]) for m in messages) / n
    return {
        "batch_rows": n,
        "fetch_pending_us_per_event": r(fetch / n * 1e6, 1),
        "build_message_us_per_event": r(build / n * 1e6, 1),
        "batches_built_and_queued_us_per_event": r(enqueue / n * 1e6, 1),
        "producer_send_until_acked_us_per_event": r(send / n * 1e6, 1),
        "implied_max_events_per_s": r(n / (fetch + send), 0),  # one after the other: drain overlaps them
        "avg_message_bytes": r(avg_bytes, 0),
    }


async def relay_bench(bench: Bench, batch_sizes: tuple[int, ...] = (2_000, 10_000),
                      events: int = EVENTS) -> tuple[list[Result], dict[str, Any]]:
    from opsat.common.outbox import OutboxRelay, RelayConfig
    from opsat.intake.service import SERVICE

    registry = SERVICE.registry
    TOPIC_PARTITIONS = SERVICE.partitions

    db = await bench.create_database("relay")
    dsn = bench.infra.dsn(db)
    url = bench.infra.sqlalchemy_url(db)
    results, topics = [], {}
    main_topic = f"{bench.namespace}.intake.events"  # the name the intake worker would use
    for i, batch in enumerate(batch_sizes):
        topic = main_topic if i == 0 else f"{bench.namespace}.relay{batch}.events"
        scratch = f"{bench.namespace}.relaysplit.events"
        await bench.create_topics({topic: TOPIC_PARTITIONS, scratch: TOPIC_PARTITIONS})
        fill = await fill_backlog(dsn, events)
        relay = OutboxRelay(RelayConfig(database_url=url, bootstrap=bench.infra.bootstrap, topic=topic,
                                        source=registry().source, batch_size=batch))
        conn = await asyncpg.connect(dsn)
        try:
            split = await relay_split(relay, conn, bench.infra.bootstrap, scratch, batch)
            meter = CpuMeter({"bench_process_relay": lambda: [__import__("os").getpid()],
                              "=postgres": postgres_cpu_seconds, "kafka": lambda: [p for p in [kafka_pid()] if p]})
            meter.start()
            t = time.perf_counter()
            published = await relay.drain(conn)
            elapsed = time.perf_counter() - t
            cpu = meter.stop()
            left = await conn.fetchval("select count(*) from outbox")
        finally:
            await relay._reset_producer()  # noqa: SLF001 - closes the relay's producer
            await conn.close()
        in_topic = await _topic_size(bench.infra.bootstrap, topic)
        rate = published / elapsed
        topics[batch] = topic
        # The target (issue: >= 40,000/s, half of ProducerPerformance) is the relay's as configured (RelayConfig's
        # batch_size, 2,000); another batch size is measured beside it for comparison.
        default = batch == RelayConfig.batch_size
        results.append(Result.measured(
            f"relay_catchup_batch{batch}", r(rate, 0), "events/s", (">=", 40_000) if default else None,
            {**({} if default else {"kind": f"comparison: {batch:,} rows a fetch, not the default"}),
             "events": events, "published": published, "seconds": r(elapsed, 2), "outbox_left": left,
             "records_in_topic": in_topic, "relay_batch_size": batch, "topic_partitions": TOPIC_PARTITIONS,
             "backlog_fill": fill, "split_one_batch_before_drain": split, "cpu": cpu}))
    return results, {"db": db, "url": url, "dsn": dsn, "topic": topics[batch_sizes[0]], "events": events}


async def consumer_limit(bootstrap: str, topic: str, events: int) -> tuple[Result, dict[str, Any]]:
    """aiokafka's own consume rate on the topic (getmany, nothing done with the records), and the
    cost of `decode_record` (JSON + pydantic) per record, measured on the records read."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from opsat.common.consumer import decode_record
    from opsat.common.kafka import topic_partitions
    from opsat.intake.service import SERVICE

    registry = SERVICE.registry

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level="read_committed")
    await consumer.start()
    sample = []
    try:
        parts = [TopicPartition(topic, p) for p in await topic_partitions(consumer, topic)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        total = sum(ends.values())
        n = 0
        t = time.perf_counter()
        deadline = t + 30
        while n < total and time.perf_counter() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batch.values():
                n += len(records)
                if len(sample) < 20_000:
                    sample += records[: 20_000 - len(sample)]
        elapsed = time.perf_counter() - t
    finally:
        await consumer.stop()
    registries = (registry(),)
    t = time.perf_counter()
    for record in sample:
        decode_record(record, registries)
    decode_s = time.perf_counter() - t
    rate = n / elapsed
    result = Result.measured("limit_kafka_consumer_aiokafka", r(rate, 0), "records/s", None, {
        "records": n, "seconds": r(elapsed, 2), "how": "AIOKafkaConsumer.getmany(max_records=10000), assign + "
        "seek_to_beginning, read_committed, nothing done with the records"})
    return result, {"decode_record_us_per_event": r(decode_s / len(sample) * 1e6, 1) if sample else None,
                    "consumer_getmany_us_per_event": r(elapsed / n * 1e6, 1) if n else None}


REPLAY_TARGET = 25_000


def cpu_per_event(cpu: dict[str, Any], events: int) -> dict[str, Any]:
    """CPU microseconds per event by process group (from `CpuMeter`), and what the target allows: a replay that uses
    every core for its whole time can spend `cores / target` seconds of CPU per event, start and end included."""
    if not events or not cpu.get("wall_s"):
        return {}
    spent = {name: r(cores * cpu["wall_s"] / events * 1e6, 1) for name, cores in cpu["cores_busy"].items()
             if name not in ("machine_iowait", "machine_steal")}
    return {**spent, "allowed_at_target (all cores, whole time)": r(cpu["cores_available"] / REPLAY_TARGET * 1e6, 1)}


async def replay_bench(bench: Bench, relay_info: dict[str, Any], cap_s: float = 45.0,
                       consumer_split: dict[str, Any] | None = None) -> Result:
    from opsat.common.db import create_engine
    from opsat.common.projections import rebuild
    from opsat.intake.projections.requests import RequestsProjection
    from opsat.intake.service import SERVICE
    from opsat.intake.settings import IntakeSettings

    runner_config = SERVICE.runner_config

    settings = IntakeSettings(database_url=relay_info["url"], kafka_bootstrap=bench.infra.bootstrap,
                              topic_namespace=bench.namespace)
    topic = relay_info["topic"]
    assert topic == settings.topic("intake")
    schema = "read_model_bench_rebuild"
    engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
    watcher = await asyncpg.connect(relay_info["dsn"])
    samples: list[tuple[float, int]] = []
    meter = CpuMeter({"=replay (this process and its lane processes)": own_cpu_seconds,
                      "=postgres": postgres_cpu_seconds, "kafka": lambda: [p for p in [kafka_pid()] if p]})
    roundtrips = count_roundtrips()
    counts = roundtrips.__enter__()
    meter.start()
    t0 = time.perf_counter()
    task = asyncio.ensure_future(rebuild(engine, RequestsProjection(topic), runner_config(settings, "requests"),
                                         schema))
    capped = False
    stats = None
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.5)
            now = time.perf_counter() - t0
            try:
                count = await watcher.fetchval(f'select count(*) from "{schema}".requests')  # one per event here
            except asyncpg.UndefinedTableError:
                count = 0
            samples.append((now, count))
            if done:
                stats = task.result()
                break
            if now > cap_s:
                capped = True
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                break
        elapsed = time.perf_counter() - t0
        cpu = meter.stop()
        roundtrips.__exit__(None, None, None)
        applied = stats.applied if stats else samples[-1][1]
        rows = await watcher.fetchval(f'select count(*) from "{schema}".requests')
    finally:
        roundtrips.__exit__(None, None, None)  # idempotent: restores asyncpg's methods
        await watcher.execute(f'drop schema if exists "{schema}" cascade')
        await watcher.close()
        await engine.dispose()
    started = next((t for t, c in samples if c > 0), None)
    steady = None
    if started is not None and len(samples) >= 2 and samples[-1][0] > started:
        first = next((t, c) for t, c in samples if c > 0)
        steady = (samples[-1][1] - first[1]) / (samples[-1][0] - first[0]) if samples[-1][0] > first[0] else None
    rate = applied / elapsed
    per_event_us = elapsed / applied * 1e6 if applied else None
    split = dict(consumer_split or {})
    if per_event_us and split.get("decode_record_us_per_event") is not None:
        split["rest_us_per_event (the batch's statements, row building, waits)"] = r(
            per_event_us - split["decode_record_us_per_event"] - (split.get("consumer_getmany_us_per_event") or 0), 1)
    return Result.measured("projection_replay", r(rate, 0), "events/s", (">=", REPLAY_TARGET), {
        "topic_events": relay_info["events"], "applied": applied, "requests_rows": rows, "seconds": r(elapsed, 2),
        "capped_at_s": cap_s if capped else None, "complete": not capped,
        "steady_rate_events_per_s (after the first commit)": r(steady, 0),
        "us_per_event": r(per_event_us, 1), "split_us_per_event": split, "cpu": cpu,
        "cpu_us_per_event": cpu_per_event(cpu, applied),
        "postgres_round_trips_per_event": {k: r(v / applied, 2) for k, v in counts.most_common()
                                           if not k.startswith("fetch ") and applied and v / applied >= 0.01},
        "how": "opsat.common.projections.rebuild(engine, RequestsProjection(topic), runner_config(settings, "
               "'requests'), schema) from this process (its lanes forked from it); progress = count(*) of the rebuild schema's requests"})
