"""What-if for the replay/projection bottleneck: the same rows, written per Kafka batch instead of per event.

A bench-only prototype (the product is untouched) of the change suggested for
`opsat.common.consumer.ProjectionRunner._process/_handle` + `RequestsProjection.apply`: for each
partition batch, one transaction with
  1. `insert into processed_events ... select unnest($ids) on conflict do nothing returning event_id`
     (dedupe the whole batch in one round trip instead of a SAVEPOINT + INSERT per event),
  2. one pipelined `executemany` for the timeline rows and one for the requests rows,
using the same decoding (`decode_record` + the event registry), the same tables (created by
`create_read_model` in a scratch schema) and the same column values as `RequestsProjection` for
RequestSubmitted (the only type in the replayed topic). Per-event retries/parking would run only
when a batch fails (re-run that batch event by event), so the happy path stays batched.
"""

from __future__ import annotations

import json
import time
from typing import Any

import asyncpg
from common import r


async def run(engine: Any, dsn: str, bootstrap: str, topic: str, schema: str = "read_model_bench_whatif",
              cap_s: float = 15.0, max_records: int = 5_000) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from opsat.common.consumer import create_read_model, decode_record
    from opsat.common.kafka import topic_partitions
    from opsat.intake.domain import events as ev
    from opsat.intake.projections.requests import INTERNAL_EVENTS, RequestsProjection, _summary
    from opsat.intake.service import SERVICE

    registry = SERVICE.registry

    conn = await asyncpg.connect(dsn)
    await conn.execute(f'drop schema if exists "{schema}" cascade')
    await create_read_model(engine, RequestsProjection(topic), schema)
    dedupe = (f'insert into "{schema}".processed_events (projection, event_id) select $1, unnest($2::text[])'
              " on conflict do nothing returning event_id")
    timeline = (f'insert into "{schema}".timeline (request_id, sequence, event_id, event_type, at, actor, visibility,'
                " summary, data) values ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) on conflict do nothing")
    requests = (f'insert into "{schema}".requests (id, organisation_id, requester_id, kind, channel, title,'
                " description, service, customer_tier, impact, urgency, priority, priority_overridden, status, team,"
                " assignee, watchers, approval, requirement, reopen_count, time_spent_minutes, submitted_at,"
                " updated_at, version) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, false, 'submitted',"
                " $13, null, $14::jsonb, $15, null, 0, 0, $16, $16, $17) on conflict do nothing")
    registries = (registry(),)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level="read_committed")
    await consumer.start()
    applied = 0
    try:
        parts = [TopicPartition(topic, p) for p in await topic_partitions(consumer, topic)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        done = {tp: 0 for tp in parts}
        t0 = time.perf_counter()
        while any(done[tp] < ends[tp] for tp in parts) and time.perf_counter() - t0 < cap_s:
            batch = await consumer.getmany(timeout_ms=200, max_records=max_records)
            for tp, records in batch.items():
                received = [decode_record(rec, registries) for rec in records]
                async with conn.transaction():
                    fresh = {row["event_id"] for row in await conn.fetch(dedupe, "requests", [e.id for e in received])}
                    new = [e for e in received if e.id in fresh and isinstance(e.event, ev.RequestSubmitted)]
                    await conn.executemany(timeline, [
                        (e.event.request_id, e.sequence, e.id, e.type, e.event.at, e.event.by,
                         "internal" if isinstance(e.event, INTERNAL_EVENTS) else "public", _summary(e.event),
                         json.dumps(e.event.model_dump(mode="json"))) for e in new])
                    await conn.executemany(requests, [
                        (s.request_id, s.organisation_id, s.requester_id, s.kind.value, s.channel.value, s.title,
                         s.description, s.service, s.customer_tier, s.impact, s.urgency, s.priority.value, s.team,
                         json.dumps(sorted(s.watchers)), "pending" if s.requires_approval else "not_required", s.at,
                         e.sequence) for e in new for s in [e.event]])
                applied += len(new)
                done[tp] = records[-1].offset + 1
        elapsed = time.perf_counter() - t0
        rows = await conn.fetchval(f'select count(*) from "{schema}".requests')
    finally:
        await consumer.stop()
        await conn.execute(f'drop schema if exists "{schema}" cascade')
        await conn.close()
    return {"events_per_s": r(applied / elapsed, 0) if elapsed else None, "applied": applied, "rows": rows,
            "seconds": r(elapsed, 2), "max_records": max_records,
            "how": "per partition batch: 1 dedupe INSERT ... unnest RETURNING + 2 executemany, one transaction"}
