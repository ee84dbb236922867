"""The database pool reports its use: connections checked out, its size, and callers waiting for one."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY
from sqlalchemy import text

from opsat.common.db import create_engine


def gauge(name: str, pool: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"pool": pool})


async def test_the_pool_reports_use_size_and_waiters(database_url):
    engine = create_engine(database_url, pool_size=2, pool_timeout_s=10, pool_name="metered-test")
    try:
        assert gauge("opsat_db_pool_size", "metered-test") == 2
        async with engine.connect() as first, engine.connect() as second:
            await first.execute(text("select 1"))
            await second.execute(text("select 1"))
            assert gauge("opsat_db_pool_in_use", "metered-test") == 2
            blocked = [asyncio.create_task(_select(engine)) for _ in range(3)]
            for _ in range(100):  # the three reach the dry pool and wait
                if gauge("opsat_db_pool_waiters", "metered-test") == 3:
                    break
                await asyncio.sleep(0.02)
            assert gauge("opsat_db_pool_waiters", "metered-test") == 3
        await asyncio.gather(*blocked)
        assert gauge("opsat_db_pool_waiters", "metered-test") == 0
        assert gauge("opsat_db_pool_in_use", "metered-test") == 0
    finally:
        await engine.dispose()


async def _select(engine) -> None:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        await conn.execute(text("select 1"))
