"""Deadlines shared by replicas: SKIP LOCKED hands each due row to exactly one of them."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg

from opsat.common import deadlines
from opsat.common.db import PLATFORM_DDL_V1, asyncpg_dsn, create_engine
from opsat.common.domain import Conflict
from opsat.common.testing.helpers import scalar


async def test_replicas_share_due_deadlines_without_double_work(database_url):
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    for statement in PLATFORM_DDL_V1:
        await conn.execute(statement)
    await conn.close()
    replicas = [create_engine(database_url, pool_size=2) for _ in range(3)]
    now = datetime.now(UTC)
    async with replicas[0].begin() as tx:
        for i in range(60):
            await deadlines.schedule(tx, "close", f"s{i}", now - timedelta(seconds=1))
        await deadlines.schedule(tx, "close", "later", now + timedelta(hours=1))
        await deadlines.schedule(tx, "close", "refused", now - timedelta(seconds=1))
        await deadlines.schedule(tx, "close", "flaky", now - timedelta(seconds=1))
    handled: Counter[str] = Counter()

    async def close(stream_id: str, _payload: dict) -> None:
        if stream_id == "refused":
            raise Conflict("already closed")  # the aggregate moved on: retire the deadline
        if stream_id == "flaky":
            raise ConnectionError("broker away")  # transient: retry later
        await asyncio.sleep(0.005)
        handled[stream_id] += 1

    async def replica(engine) -> None:
        while await deadlines.fire_due(engine, {"close": close}, limit=5):
            pass

    await asyncio.gather(*(replica(e) for e in replicas))
    assert set(handled) == {f"s{i}" for i in range(60)}
    assert set(handled.values()) == {1}
    assert await scalar(database_url, "select string_agg(stream_id, ',' order by stream_id) from deadlines") == \
        "flaky,later"
    assert await scalar(database_url, "select attempts from deadlines where stream_id = 'flaky'") == 1
    assert await scalar(database_url, "select due_at > now() from deadlines where stream_id = 'flaky'")
    for engine in replicas:
        await engine.dispose()
