"""Deadlines shared by replicas: SKIP LOCKED hands each due row to exactly one of them; due-ness is
judged by the worker's clock, and a command that comes early keeps its deadline."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

from opsat.common import deadlines
from opsat.common.db import create_engine
from opsat.common.domain import Conflict, NotDueYet
from opsat.common.testing.helpers import platform_database, scalar


async def test_replicas_share_due_deadlines_without_double_work(database_url):
    await platform_database(database_url)
    replicas = [create_engine(database_url, pool_size=2) for _ in range(3)]
    # A clock that stands still: the flaky row's retry (1 s later) never becomes due during the test,
    # however long the test takes, so it is tried exactly once.
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
        while await deadlines.fire_due(engine, {"close": close}, limit=5, now=lambda: now):
            pass

    await asyncio.gather(*(replica(e) for e in replicas))
    assert set(handled) == {f"s{i}" for i in range(60)}
    assert set(handled.values()) == {1}
    assert await scalar(database_url, "select string_agg(stream_id, ',' order by stream_id) from deadlines") == \
        "flaky,later"
    assert await scalar(database_url, "select attempts from deadlines where stream_id = 'flaky'") == 1
    assert await scalar(database_url, "select last_error from deadlines where stream_id = 'flaky'") == \
        "ConnectionError: broker away"
    # The retry's due time comes from the worker's clock: 2 ** 0 s after it.
    assert await scalar(database_url, "select due_at from deadlines where stream_id = 'flaky'") == \
        now + timedelta(seconds=1)
    for engine in replicas:
        await engine.dispose()


async def test_a_not_due_yet_refusal_keeps_the_deadline_and_moves_it_to_the_named_time(database_url):
    await platform_database(database_url)
    engine = create_engine(database_url, pool_size=2)
    scheduled = datetime(2026, 10, 10, 8, 0, tzinfo=UTC)
    domain_due = scheduled + timedelta(minutes=5)  # the aggregate knows a later due time than the row
    clock = scheduled
    async with engine.begin() as tx:
        await deadlines.schedule(tx, "close", "r1", scheduled, {"reason": "auto"})
    closed: list[str] = []

    async def close(stream_id: str, _payload: dict) -> None:
        if clock < domain_due:
            raise NotDueYet(f"due at {domain_due.isoformat()}", due_at=domain_due, code="auto_close_not_due")
        closed.append(stream_id)

    assert await deadlines.fire_due(engine, {"close": close}, now=lambda: clock) == 0
    assert closed == []
    assert await scalar(database_url, "select count(*) from deadlines") == 1
    assert await scalar(database_url, "select due_at from deadlines where stream_id = 'r1'") == domain_due
    assert await scalar(database_url, "select attempts from deadlines where stream_id = 'r1'") == 0
    assert await scalar(database_url, "select payload->>'reason' from deadlines where stream_id = 'r1'") == "auto"

    clock = domain_due - timedelta(seconds=1)  # moved, so not even selected before its new time
    assert await deadlines.fire_due(engine, {"close": close}, now=lambda: clock) == 0
    clock = domain_due
    assert await deadlines.fire_due(engine, {"close": close}, now=lambda: clock) == 1
    assert closed == ["r1"]
    assert await scalar(database_url, "select count(*) from deadlines") == 0
    await engine.dispose()


async def test_a_worker_clock_behind_the_database_does_not_fire_early_nor_lose_the_deadline(database_url):
    await platform_database(database_url)
    db_now = await scalar(database_url, "select now()")
    due = db_now - timedelta(seconds=1)  # due by PostgreSQL's clock
    worker_now = db_now - timedelta(seconds=5)  # the worker's clock runs 5 s behind the database's
    engine = create_engine(database_url, pool_size=2)
    async with engine.begin() as tx:
        await deadlines.schedule(tx, "close", "r1", due)
    calls: list[datetime] = []

    async def close(stream_id: str, _payload: dict) -> None:
        calls.append(worker_now)
        if worker_now < due:  # what the domain checks, with the worker's clock
            raise NotDueYet("not due yet", due_at=due, code="auto_close_not_due")

    assert await deadlines.fire_due(engine, {"close": close}, now=lambda: worker_now) == 0
    assert calls == []  # not selected: the same clock the command would see says not due
    assert await scalar(database_url, "select due_at from deadlines where stream_id = 'r1'") == due

    worker_now = due
    assert await deadlines.fire_due(engine, {"close": close}, now=lambda: worker_now) == 1
    assert calls == [due]
    assert await scalar(database_url, "select count(*) from deadlines") == 0
    await engine.dispose()


async def test_the_scheduler_loop_uses_the_clock_it_is_given(database_url):
    await platform_database(database_url)
    engine = create_engine(database_url, pool_size=2)
    real_now = datetime.now(UTC)
    async with engine.begin() as tx:
        await deadlines.schedule(tx, "close", "past-for-the-database", real_now - timedelta(minutes=1))
        await deadlines.schedule(tx, "close", "due-by-the-clock", real_now - timedelta(hours=2))
    fired: list[str] = []
    stop = asyncio.Event()

    async def close(stream_id: str, _payload: dict) -> None:
        fired.append(stream_id)
        stop.set()

    await asyncio.wait_for(
        deadlines.run_scheduler(engine, {"close": close}, stop, poll_interval_s=0.05,
                                clock=lambda: real_now - timedelta(hours=1)),
        timeout=10,
    )
    assert fired == ["due-by-the-clock"]
    assert await scalar(database_url, "select stream_id from deadlines") == "past-for-the-database"
    await engine.dispose()
