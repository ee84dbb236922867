"""Small helpers for tests against the real stores."""

from __future__ import annotations

from typing import Any

import asyncpg

from opsat.common.db import asyncpg_dsn


async def scalar(database_url: str, sql: str, *args: Any) -> Any:
    """One value straight from the database (what was appended, applied, queued)."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()
