"""Alembic, driven from code: each service's `migrations/` folder holds its own versions.

`upgrade(database_url, script_location)` is what `opsat-<service> migrate` and the tests call;
each service's `migrations/env.py` is one line, `run_env()`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(database_url: str, script_location: str | Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, script_location: str | Path, revision: str = "head") -> None:
    """Blocking; from async code use `await asyncio.to_thread(upgrade, ...)`."""
    command.upgrade(alembic_config(database_url, script_location), revision)


def run_env() -> None:
    """Body of every service's migrations/env.py (online mode only: migrations run against a database)."""
    url = context.config.get_main_option("sqlalchemy.url")

    def do_run(connection) -> None:  # type: ignore[no-untyped-def]
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as conn:
            await conn.run_sync(do_run)
            await conn.commit()
        await engine.dispose()

    asyncio.run(main())
