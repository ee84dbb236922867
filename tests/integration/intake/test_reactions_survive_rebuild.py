"""A reaction's memory (the auto-close scheduler's processed event ids) lives outside the read model:
rebuilding and swapping the requests projection leaves it whole."""

from __future__ import annotations

import asyncio

from opsat.common.db import create_engine
from opsat.common.projections import rebuild, swap
from opsat.common.testing.helpers import scalar
from opsat.intake.service import SERVICE

SCHEDULER_IDS = "select count(*) from reactions.processed_events where projection = 'auto_close_scheduler'"


async def test_swapping_the_read_model_keeps_what_the_scheduler_has_processed(intake):
    agent = intake.token("agent-1", "ops", "agent")
    db = intake.settings.database_url
    async with intake.worker():
        rid = await intake.submit(team="desk")
        for path, body in (("accept", {}), ("start", None), ("resolve", {"solution": "patched"})):
            r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=agent)
            assert r.status_code == 200, r.text
        await intake.wait_for(rid, 4)
        for _ in range(200):
            if await scalar(db, SCHEDULER_IDS) == 1:  # the resolve: the only one of the four events it handles
                break
            await asyncio.sleep(0.05)
    assert await scalar(db, SCHEDULER_IDS) == 1
    assert await scalar(db, "select count(*) from deadlines where stream_id = $1", rid) == 1

    engine = create_engine(db)
    projection = SERVICE.consumer(intake.settings, "requests")
    await rebuild(engine, projection, SERVICE.runner_config(intake.settings, "requests"), "rm_rebuilt")
    await swap(engine, "rm_rebuilt")
    await engine.dispose()

    assert await scalar(db, SCHEDULER_IDS) == 1
    assert await scalar(db, "select count(*) from read_model.processed_events"
                            " where projection = 'auto_close_scheduler'") == 0
