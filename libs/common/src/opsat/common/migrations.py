"""Alembic, driven from code: one environment here (`alembic/`), each service's versions in its own folder.

`upgrade(database_url, versions)` is what `opsat-<service> migrate` and the tests call; a service
ships only its `migrations/versions/` (inside the package, so images carry them).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from alembic import command, context
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from opsat.common.db import asyncpg_dsn

ENVIRONMENT = Path(__file__).parent / "alembic"


def alembic_config(database_url: str, versions: str | Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(ENVIRONMENT))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(versions))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, versions: str | Path, revision: str = "head") -> bool:
    """Blocking; from async code use `await asyncio.to_thread(upgrade, ...)`. Returns whether it migrated:
    a database already at the head is left alone without starting alembic's environment (a restart of a
    process that migrates first is then not slowed by it)."""
    config = alembic_config(database_url, versions)
    if revision == "head" and applied(database_url) == set(ScriptDirectory.from_config(config).get_heads()):
        return False
    command.upgrade(config, revision)
    return True


def applied(database_url: str) -> set[str]:
    """The revisions recorded in the database (empty if none)."""

    async def read() -> set[str]:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            if not await conn.fetchval("select to_regclass('alembic_version') is not null"):
                return set()
            return {r[0] for r in await conn.fetch("select version_num from alembic_version")}
        finally:
            await conn.close()

    return asyncio.run(read())



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
