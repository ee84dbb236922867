"""The runner's `stream_versions` statement (the monotone check of every poll): it finds a batch's streams through
the key, not by reading every stream the projection ever applied (a read model a year old must not make each poll
slower), moves their versions, and tells a live read model's readers when one moved."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import MetaData, text

from opsat.common.consumer import (
    ProjectionRunner,
    ReceivedEvent,
    RunnerConfig,
    _newer_only,
    create_read_model,
    processed_events_table,
    stream_versions_table,
)
from opsat.common.db import READ_MODEL_SCHEMA, asyncpg_dsn, create_engine
from opsat.common.freshness import READ_MODEL_CHANNEL

STREAMS = 100_000


class Versioned:
    name = "versioned"

    def __init__(self) -> None:
        self.topics = ["unused"]
        self.metadata = MetaData(schema=READ_MODEL_SCHEMA)
        processed_events_table(self.metadata)
        stream_versions_table(self.metadata)

    async def apply(self, conn: Any, event: ReceivedEvent) -> None:
        pass


def received(n: int, sequence: int, event_id: str | None = None) -> ReceivedEvent:
    return ReceivedEvent(id=event_id or f"ev-{n}-{sequence}", type="opsat.test.thing.happened.v1",
                         event_type="opsat.test.thing.happened", schema_version=1, source="/opsat/test",
                         subject=f"thing-{n}", sequence=sequence, time=datetime.now(UTC), data={}, tenant=None,
                         actor=None, correlation_id=None)


async def test_a_poll_reads_the_versions_of_its_own_streams_by_key(database_url, kafka_bootstrap):
    engine = create_engine(database_url)
    projection = Versioned()
    await create_read_model(engine, projection)
    async with engine.begin() as conn:
        await conn.execute(text(
            "insert into read_model.stream_versions (projection, source, stream_id, version)"
            " select 'versioned', '/opsat/test', 'thing-' || n, 3 from generate_series(1, :n) n"), {"n": STREAMS})
        await conn.execute(text("analyze read_model.stream_versions"))
    runner = ProjectionRunner(engine, projection, RunnerConfig(bootstrap=kafka_bootstrap, group_id="unused",
                                                               dlq_topic="unused"))
    batch = [received(7, 3), received(7, 4), received(99_999, 5), received(STREAMS + 1, 1)]
    try:
        async with engine.begin() as conn:
            before = await _scans(conn)  # (the session's counts not yet flushed, this transaction's included)
            fresh, versions = await runner._first_seen(conn, batch)  # noqa: SLF001 - the statement under test
            after = await _scans(conn)
            moved = dict((await conn.execute(text(
                "select stream_id, version from read_model.stream_versions where stream_id = any(:ids)"),
                {"ids": ["thing-7", "thing-99999", f"thing-{STREAMS + 1}", "thing-8"]})).all())
            again, _ = await runner._first_seen(conn, batch[:2])  # noqa: SLF001 - a redelivery
    finally:
        await engine.dispose()
    assert fresh == {e.id for e in batch}
    assert versions == {("/opsat/test", "thing-7"): 3, ("/opsat/test", "thing-99999"): 3}
    newer, stale = _newer_only(batch, versions)
    assert [e.id for e in newer] == ["ev-7-4", "ev-99999-5", f"ev-{STREAMS + 1}-1"]
    assert [(e.id, v) for e, v in stale] == [("ev-7-3", 3)]
    # The same statement moved each stream to its newest event (and created the new one's row), and no other.
    assert moved == {"thing-7": 4, "thing-99999": 5, f"thing-{STREAMS + 1}": 1, "thing-8": 3}
    assert again == set()
    # By key, not a pass over 100,000 streams.
    assert after.seq_scan == before.seq_scan and after.idx_scan >= before.idx_scan + 2


async def _scans(conn: Any) -> Any:
    return (await conn.execute(text("select seq_scan, idx_scan from pg_stat_xact_user_tables"
                                    " where schemaname = 'read_model' and relname = 'stream_versions'"))).one()


async def test_a_live_batch_notifies_the_read_model_channel_once_when_a_version_moved(database_url, kafka_bootstrap):
    """The NOTIFY that wakes read-your-writes waits rides on the same statement: one per batch that moved a
    stream's version, delivered at commit, and none for a batch of redelivered or older events."""
    engine = create_engine(database_url)
    projection = Versioned()
    await create_read_model(engine, projection)
    runner = ProjectionRunner(engine, projection, RunnerConfig(bootstrap=kafka_bootstrap, group_id="unused",
                                                               dlq_topic="unused"))
    listener = await asyncpg.connect(asyncpg_dsn(database_url))
    heard: list[str] = []
    await listener.add_listener(READ_MODEL_CHANNEL, lambda _c, _p, _ch, payload: heard.append(payload))
    try:
        for batch in ([received(1, 1), received(1, 2), received(2, 1)], [received(1, 1)], [received(3, 1)],
                      [received(1, 1, "ev-older-copy")]):
            async with engine.begin() as conn:
                await runner._first_seen(conn, batch)  # noqa: SLF001 - the statement under test
            await asyncio.sleep(0.3)  # (delivered at commit)
            heard.append("|")
    finally:
        await listener.close()
        await engine.dispose()
    assert "".join(p if p == "|" else "n" for p in heard) == "n||n||"
    assert heard[0] == "versioned"
