"""Alembic, driven from code: one environment here (`alembic/`), each service's versions in its own folder.

`upgrade(database_url, versions)` is what `opsat-<service> migrate` and the tests call; a service
ships only its `migrations/versions/` (inside the package, so images carry them).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

ENVIRONMENT = Path(__file__).parent / "alembic"


def alembic_config(database_url: str, versions: str | Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(ENVIRONMENT))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(versions))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, versions: str | Path, revision: str = "head") -> None:
    """Blocking; from async code use `await asyncio.to_thread(upgrade, ...)`."""
    command.upgrade(alembic_config(database_url, versions), revision)



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
