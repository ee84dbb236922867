"""After a fault heals: acknowledged commands vs the event store vs the topic vs every read-model row.

- lost: an acknowledged event id missing from the store;
- duplicates applied: a command (one correlation id) that produced events twice in the store, or a
  stream whose timeline rows or logged time exceed what the store holds;
- topic: every stored event on the topic, the first copy of each stream's events in version order;
- read model: the live schema compared row by row, table by table, with a rebuild replayed from the
  topic into a fresh schema; and each request row at its stream's last version.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg

from opsat.common.db import asyncpg_dsn, create_engine
from opsat.common.projections import rebuild, snapshot
from opsat.common.testing.infra import consume_all
from opsat.intake.service import SERVICE
from opsat.intake.settings import IntakeSettings

from .load import Load


@dataclass
class Report:
    fault: str
    acknowledged: int = 0
    lost: int = 0
    duplicates_applied: int = 0
    missing_on_topic: int = 0
    out_of_order_on_topic: int = 0
    read_model_mismatches: int = 0
    errors_5xx_not_503: int = 0
    answers_503: int = 0
    recovery_s: float = 0.0
    converge_s: float = 0.0
    events: int = 0
    details: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicates_applied or self.missing_on_topic or self.out_of_order_on_topic
                    or self.read_model_mismatches or self.errors_5xx_not_503)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "details": self.details[:20]}


async def converge(database_url: str, timeout: float = 180) -> float:
    """Wait until the outbox is empty and every request row is at its stream's last version."""
    started = time.monotonic()
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        while True:
            behind = await conn.fetchval("""
                select (select count(*) from outbox) + (
                  select count(*) from (select stream_id, max(version) v from events group by stream_id) e
                  left join read_model.requests r on r.id = e.stream_id where r.version is distinct from e.v)""")
            if behind == 0:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"not converged after {timeout:.0f}s: {behind} behind")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def check(report: Report, load: Load, database_url: str, bootstrap: str, namespace: str) -> Report:
    report.converge_s = await converge(database_url)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch("select stream_id, version, event_id::text as id, event_type, data::text as data,"
                                " metadata->>'correlation_id' as cid from events order by position")
        acked_ids = [i for ack in load.acks for i in ack.event_ids]
        stored = {r["id"] for r in rows}
        report.events = len(rows)
        lost = [i for i in acked_ids if i not in stored]
        report.lost = len(lost)
        report.details += [f"lost {i}" for i in lost]

        # duplicates in the store: one command's correlation id on two different appends
        acked_by_key = {ack.key: set(ack.event_ids) for ack in load.acks}
        for r in rows:
            if r["cid"] in acked_by_key and r["id"] not in acked_by_key[r["cid"]]:
                report.duplicates_applied += 1
                report.details.append(f"command {r['cid']} applied twice: {r['id']}")
        # duplicates in the read model: more timeline rows or more time than the store has
        per_stream: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for r in rows:
            per_stream[r["stream_id"]].append(r)
        timeline = dict(await conn.fetch("select request_id, count(*) from read_model.timeline group by 1"))
        minutes = dict(await conn.fetch("select id, time_spent_minutes from read_model.requests"))
        versions = dict(await conn.fetch("select id, version from read_model.requests"))
        for stream, events in per_stream.items():
            logged = sum(json.loads(e["data"])["minutes"] for e in events if e["event_type"].endswith("time_logged"))
            if timeline.get(stream, 0) > len(events) or minutes.get(stream, 0) > logged:
                report.duplicates_applied += 1
                report.details.append(f"{stream}: timeline {timeline.get(stream)} / {len(events)} events, "
                                      f"time {minutes.get(stream)} / {logged}")
            if timeline.get(stream, 0) < len(events) or minutes.get(stream, 0) < logged:
                report.read_model_mismatches += 1
                report.details.append(f"{stream}: read model misses events")
            if versions.get(stream) != events[-1]["version"]:
                report.read_model_mismatches += 1
                report.details.append(f"{stream}: row at v{versions.get(stream)}, stream at v{events[-1]['version']}")
    finally:
        await conn.close()

    # the topic: every stored event, first copies in stream order
    topic = f"{namespace}.intake.events"
    records = await consume_all(bootstrap, topic, min_count=len(rows), timeout=60)
    seen: set[str] = set()
    last: dict[str, int] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = json.loads(record.value)
        if event["id"] in seen:
            continue  # a relay retry: consumers drop it
        seen.add(event["id"])
        sequence = int(event["sequence"])
        if sequence <= last.get(event["subject"], 0):
            report.out_of_order_on_topic += 1
            report.details.append(f"{event['subject']}: v{sequence} after v{last[event['subject']]}")
        last[event["subject"]] = max(sequence, last.get(event["subject"], 0))
    report.missing_on_topic = len(stored - seen)

    # every read-model row: the live schema against a rebuild from the topic
    settings = IntakeSettings(database_url=database_url, kafka_bootstrap=bootstrap, topic_namespace=namespace)
    engine = create_engine(database_url, pool_size=2)
    try:
        projection = SERVICE.consumer(settings, "requests")
        await rebuild(engine, projection, SERVICE.runner_config(settings, "requests"), "faults_check")
        live = await snapshot(engine, projection)
        replayed = await snapshot(engine, projection, "faults_check")
    finally:
        await engine.dispose()
    for table in live:
        a = {json.dumps(r, sort_keys=True, default=str) for r in live[table]}
        b = {json.dumps(r, sort_keys=True, default=str) for r in replayed[table]}
        if a != b:
            report.read_model_mismatches += len(a ^ b)
            report.details += [f"{table}: live only {x[:200]}" for x in list(a - b)[:3]]
            report.details += [f"{table}: rebuild only {x[:200]}" for x in list(b - a)[:3]]
    return report
