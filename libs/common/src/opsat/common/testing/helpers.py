"""Small helpers for tests against the real stores."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from opsat.common.db import PLATFORM_DDL_V1, PLATFORM_DDL_V2, PLATFORM_DDL_V3, asyncpg_dsn


async def scalar(database_url: str, sql: str, *args: Any) -> Any:
    """One value straight from the database (what was appended, applied, queued)."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def rows(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Rows straight from the database."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def platform_database(database_url: str) -> None:
    """Create the platform tables (events, outbox, idempotency keys, deadlines) in an empty database,
    with the same statements as every service's migrations."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        for statement in [*PLATFORM_DDL_V1, *PLATFORM_DDL_V2, *PLATFORM_DDL_V3]:
            await conn.execute(statement)
    finally:
        await conn.close()


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float = 60.0, interval: float = 0.1,
                     what: str = "condition") -> None:
    """Poll an async predicate until it holds; fail the test after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached in {timeout:.0f}s")
        await asyncio.sleep(interval)
