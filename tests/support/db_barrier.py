"""A barrier inside PostgreSQL that holds event-store appends until the test lets them go.

A test-installed trigger on `events` takes a shared advisory lock that the test holds exclusively, so
every append blocks at its first insert, after it has read the stream and passed every pre-check. Once
all racers are seen waiting (pg_stat_activity), releasing the lock lets them commit against each other:
the conflict can then only be found by the database's constraints, not by a read before the write.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import asyncpg

from opsat.common.db import asyncpg_dsn

T = TypeVar("T")

LOCK_KEY = 7_320_451  # any bigint no product code uses

_INSTALL = f"""
create function test_append_barrier() returns trigger language plpgsql as $$
begin
    perform pg_advisory_xact_lock_shared({LOCK_KEY});
    return new;
end $$;
create trigger test_append_barrier before insert on events
    for each statement execute function test_append_barrier();
"""
_REMOVE = """
drop trigger if exists test_append_barrier on events;
drop function if exists test_append_barrier();
"""
_WAITING = f"""
select count(*) from pg_stat_activity, pg_locks l
where l.pid = pg_stat_activity.pid and l.locktype = 'advisory' and not l.granted
  and l.objid = {LOCK_KEY} and pg_stat_activity.datname = current_database()
"""


class Barrier:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.held = True

    async def waiting(self) -> int:
        """Appends blocked at the barrier now."""
        return await self._conn.fetchval(_WAITING)

    async def release(self) -> None:
        if self.held:
            await self._conn.execute(f"select pg_advisory_unlock({LOCK_KEY})")
            self.held = False

    async def race(self, calls: Sequence[Awaitable[T]], timeout: float = 20.0) -> list[T]:
        """Start every call, wait until all of them are blocked at the barrier, release, gather the answers."""
        tasks = [asyncio.ensure_future(call) for call in calls]
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while (blocked := await self.waiting()) < len(tasks):
                done = [t for t in tasks if t.done()]
                if done or asyncio.get_running_loop().time() > deadline:
                    answers = [t.result() for t in done]
                    raise AssertionError(f"only {blocked} of {len(tasks)} appends reached the barrier; "
                                         f"answered before it: {[getattr(a, 'text', a) for a in answers]}")
                await asyncio.sleep(0.02)
        finally:
            await self.release()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return list(results)


@asynccontextmanager
async def append_barrier(database_url: str) -> AsyncIterator[Barrier]:
    """Install the barrier (held) for the block; removed afterwards."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(_INSTALL)
        await conn.execute(f"select pg_advisory_lock({LOCK_KEY})")
        barrier = Barrier(conn)
        try:
            yield barrier
        finally:
            await barrier.release()
            await conn.execute(_REMOVE)
    finally:
        await conn.close()
