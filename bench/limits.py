"""(6) The limits our figures are compared with, measured in the same run on the same PostgreSQL
and Kafka: raw asyncpg inserts into the `events` table shape, and Kafka's own ProducerPerformance.

PostgreSQL (a scratch copy `raw_events (like events including all)` in a bench database):
  - one INSERT per transaction, 16 connections, for a few seconds
  - executemany of 50,000 rows in one transaction
  - what-ifs on the append's real shape (events + outbox CTE, one transaction, 16 connections):
    without the outbox, with it, and with the outbox's statement-level `pg_notify` trigger as the
    migration installs it -- to see what the outbox and its NOTIFY cost a commit.
Kafka: `org.apache.kafka.tools.ProducerPerformance` (200,000 x 600 B, acks=all, linger.ms=5).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from common import Bench, Result, r

KAFKA_JARS = Path.home() / ".cache/opsat/kafka-4.1.1"

_SCRATCH = """
    create table raw_events (like events including all);
    create table raw_outbox (position bigint primary key references raw_events (position));
    create table raw_outbox_notify (position bigint primary key references raw_events (position));
    create trigger raw_outbox_notify after insert on raw_outbox_notify
        for each statement execute function outbox_notify();
"""
_INSERT = """insert into raw_events (stream_id, stream_type, version, event_id, event_type, schema_version, data,
             metadata) values ($1, 'request', 1, $2, 'opsat.intake.request.submitted', 1, $3::jsonb, $4::jsonb)"""


def _append_sql(outbox: str | None) -> str:
    """EventStore.append's statement (eventstore._INSERT_EVENTS) on the scratch tables."""
    head = """
        with appended as (
            insert into raw_events (stream_id, stream_type, version, event_id, event_type, schema_version, data,
                                    metadata)
            select $1, 'request', t.version, t.event_id, t.event_type, t.schema_version, t.data, $2::jsonb
            from unnest($3::integer[], $4::uuid[], $5::text[], $6::integer[], $7::jsonb[])
                 as t(version, event_id, event_type, schema_version, data)
            order by t.version
            returning position
        )"""
    if outbox is None:
        return head + " select max(position) from appended"
    return head + f""", queued as (insert into {outbox} (position) select position from appended
                                  returning position) select max(position) from queued"""


async def _closed_loop(conns: list[asyncpg.Connection], seconds: float, op: Any) -> float:
    n = 0
    end = time.perf_counter() + seconds

    async def loop(conn: asyncpg.Connection) -> None:
        nonlocal n
        while time.perf_counter() < end:
            await op(conn)
            n += 1

    t = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in conns))
    return n / (time.perf_counter() - t)


async def postgres(bench: Bench, event_json: str, connections: int = 16, seconds: float = 4.0,
                   many_rows: int = 50_000, whatif_seconds: float = 3.0) -> tuple[list[Result], dict[str, Any]]:
    db = await bench.create_database("limits")
    dsn = bench.infra.dsn(db)
    admin = await asyncpg.connect(dsn)
    await admin.execute(_SCRATCH)
    conns = [await asyncpg.connect(dsn) for _ in range(connections)]
    meta = json.dumps({"actor": "bench-user", "tenant": "bench-org", "correlation_id": "bench"})
    try:
        async def single(conn: asyncpg.Connection) -> None:
            await conn.execute(_INSERT, str(uuid.uuid4()), uuid.uuid4(), event_json, meta)  # autocommit = 1 txn

        single_rate = await _closed_loop(conns, seconds, single)

        rows = [(str(uuid.uuid4()), uuid.uuid4(), event_json, meta) for _ in range(many_rows)]
        t = time.perf_counter()
        async with admin.transaction():
            await admin.executemany(_INSERT, rows)
        many_rate = many_rows / (time.perf_counter() - t)

        whatif = {}
        for label, outbox in (("events_only", None), ("events+outbox", "raw_outbox"),
                              ("events+outbox+notify_trigger (as migrated)", "raw_outbox_notify")):
            sql = _append_sql(outbox)

            async def append(conn: asyncpg.Connection, sql: str = sql) -> None:
                async with conn.transaction():
                    await conn.fetchval(sql, str(uuid.uuid4()), meta, [1], [str(uuid.uuid4())],
                                        ["opsat.intake.request.submitted"], [1], [event_json])

            whatif[label] = r(await _closed_loop(conns, whatif_seconds, append), 0)
    finally:
        for c in conns:
            await c.close()
        await admin.close()
    results = [
        Result.measured("limit_pg_single_insert_16conn", r(single_rate, 0), "rows/s", None, {
            "connections": connections, "seconds": seconds, "row_bytes_data": len(event_json),
            "how": "asyncpg, one INSERT per transaction (autocommit) into a copy of the events table"}),
        Result.measured("limit_pg_executemany_1txn", r(many_rate, 0), "rows/s", None, {
            "rows": many_rows, "how": "asyncpg executemany, one transaction, same table and row"}),
    ]
    return results, {"append_shape_16conn_commits_per_s": whatif}


def producer_performance(bench: Bench, topic: str, records: int = 200_000, size: int = 600) -> Result:
    cmd = ["java", "-Xmx512m", "-cp", f"{KAFKA_JARS}/*", "org.apache.kafka.tools.ProducerPerformance",
           "--topic", topic, "--num-records", str(records), "--record-size", str(size), "--throughput", "-1",
           "--producer-props", f"bootstrap.servers={bench.infra.bootstrap}", "acks=all", "linger.ms=5"]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - t
    last = [line for line in out.stdout.splitlines() if "records sent" in line]
    m = re.search(r"([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency"
                  r"(?:, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th)?", last[-1] if last else "")
    if out.returncode or not m:
        raise RuntimeError(f"ProducerPerformance failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return Result.measured("limit_kafka_producer_performance", r(float(m.group(1)), 0), "records/s", None, {
        "records": records, "record_bytes": size, "acks": "all", "linger_ms": 5, "MB_per_s": float(m.group(2)),
        "avg_latency_ms": float(m.group(3)), "p99_latency_ms": int(m.group(7)) if m.group(7) else None,
        "topic_partitions": 6, "wall_s_including_jvm_start": r(wall), "summary_line": last[-1].strip()})
