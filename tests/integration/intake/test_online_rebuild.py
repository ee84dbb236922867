"""Online rebuild-and-swap: the read model is rebuilt from the topic while commands keep arriving and the live
projection keeps applying them, then swapped in (pause, catch up, swap, resume) without losing an event."""

from __future__ import annotations

import asyncio

import asyncpg

from opsat.common.db import asyncpg_dsn, create_engine
from opsat.common.projections import rebuild, rebuild_and_swap, snapshot
from opsat.common.testing.helpers import scalar
from opsat.intake.projections.requests import RequestsProjection
from opsat.intake.service import SERVICE


async def stream_versions(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return dict(await conn.fetch("select stream_id, max(version) from events group by stream_id"))
    finally:
        await conn.close()


async def test_a_swap_while_commands_arrive_leaves_the_read_model_equal_to_the_event_store(intake):
    agent = intake.token("agent-1", "ops", "agent")
    db = intake.settings.database_url
    projection = RequestsProjection(intake.settings.topic("intake"))
    config = SERVICE.runner_config(intake.settings, projection.name)
    engine = create_engine(db)
    async with intake.worker():
        ids = [await intake.submit(title=f"request {i}") for i in range(8)]
        stop = asyncio.Event()

        async def keep_writing() -> int:
            n = 0
            while not stop.is_set():
                if n % 4 == 0:
                    ids.append(await intake.submit(title=f"request {len(ids)}"))
                r = await intake.client.post(f"/api/v1/requests/{ids[n % len(ids)]}/notes",
                                             json={"body": f"note {n}"}, headers=agent)
                assert r.status_code == 200, r.text
                n += 1
                await asyncio.sleep(0)
            return n

        writer = asyncio.create_task(keep_writing())
        while await scalar(db, "select count(*) from events") < 60:  # a history to rebuild, still growing
            await asyncio.sleep(0.05)
        lines: list[str] = []
        appended_before = await scalar(db, "select count(*) from events")
        report = await rebuild_and_swap(engine, [(projection, config)], "rm_online", progress=lines.append)
        appended_during = await scalar(db, "select count(*) from events") - appended_before
        await asyncio.sleep(0.5)  # and some more after the swap
        stop.set()
        written = await writer
        versions = await stream_versions(db)
        for rid, version in versions.items():  # the live projection, now on the swapped-in schema
            await intake.wait_for(rid, version, headers=agent)

    assert written > 0 and appended_during > 0, "commands must keep arriving during the rebuild"
    assert report.retired.startswith("read_model_old_")
    assert any(line.startswith("rebuild requests") for line in lines), lines
    assert "pausing the live projections" in lines and lines[-1].startswith("swapped"), lines
    # Equal to the event store: every stream at its last version, and the same as a rebuild from scratch.
    live = await snapshot(engine, projection)
    assert {r["id"]: r["version"] for r in live["requests"]} == versions
    assert len(live["timeline"]) == sum(versions.values())
    await rebuild(engine, projection, config, "rm_check")
    assert await snapshot(engine, projection, "rm_check") == live
    await engine.dispose()
