"""Rebuilding a projection from its topics into a fresh schema, comparing, and swapping it in.

The rebuild reads every partition from the beginning (no consumer group) up to the end offsets seen
when it started, into `schema`; the live schema keeps serving meanwhile. `swap` renames both schemas
in one transaction, so readers see either the old or the new read model, never a mix.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from opsat.common.consumer import (
    Projection,
    ProjectionRunner,
    RunnerConfig,
    RunnerStats,
    create_read_model,
    read_model_engine,
)
from opsat.common.db import READ_MODEL_SCHEMA


async def rebuild(engine: AsyncEngine, projection: Projection, config: RunnerConfig, schema: str) -> RunnerStats:
    if schema == READ_MODEL_SCHEMA:
        raise ValueError("rebuild into a fresh schema, not the live one")
    async with engine.begin() as conn:
        await conn.execute(text(f'drop schema if exists "{schema}" cascade'))
    await create_read_model(engine, projection, schema)
    runner = ProjectionRunner(engine, projection, replace(config, schema=schema, until_end=True))
    return await runner.run(asyncio.Event())


async def swap(engine: AsyncEngine, rebuilt: str) -> str:
    """Make `rebuilt` the live read model; returns the name the old one was kept under."""
    retired = f"{READ_MODEL_SCHEMA}_old_{datetime.now(UTC):%Y%m%d%H%M%S}"
    async with engine.begin() as conn:
        await conn.execute(text(f'alter schema "{READ_MODEL_SCHEMA}" rename to "{retired}"'))
        await conn.execute(text(f'alter schema "{rebuilt}" rename to "{READ_MODEL_SCHEMA}"'))
    return retired


async def snapshot(engine: AsyncEngine, projection: Projection, schema: str = READ_MODEL_SCHEMA,
                   exclude: tuple[str, ...] = ("processed_events",)) -> dict[str, list[dict[str, Any]]]:
    """Every table of a projection as sorted rows: two read models are equal when their snapshots are."""
    out: dict[str, list[dict[str, Any]]] = {}
    async with read_model_engine(engine, schema).connect() as conn:
        for table in projection.metadata.sorted_tables:
            if table.name in exclude:
                continue
            rows = [dict(r) for r in (await conn.execute(select(table))).mappings()]
            out[table.name] = sorted(rows, key=lambda r: [str(r[c.name]) for c in table.primary_key.columns])
    return out
