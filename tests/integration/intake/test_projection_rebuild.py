"""A projection rebuilt from the topic equals the live one, and can be swapped in."""

from __future__ import annotations

from opsat.common.projections import rebuild, snapshot, swap
from opsat.intake.projections.requests import RequestsProjection
from opsat.intake.service import SERVICE


async def test_rebuilt_read_model_equals_live_and_swaps_in(intake):
    agent = intake.token("agent-1", "ops", "agent")
    requester = intake.token("u-req", "acme", "requester")
    async with intake.worker(only=("relay", "projection")):
        ids = [await intake.submit(title=f"request {i}", impact=1 + i % 3, urgency=1 + (i // 3) % 3) for i in range(12)]
        version = {}
        for i, rid in enumerate(ids):
            calls = [("accept", {"team": f"team-{i % 3}", "assignee": "agent-1"}), ("start", None),
                     ("notes", {"body": "internal"}), ("time-entries", {"minutes": 15 + i})]
            if i % 2:
                calls += [("resolve", {"solution": "done"})]
            if i % 4 == 1:
                calls += [("links", {"target_id": ids[0], "link_type": "caused_by"})]
            for path, body in calls:
                r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=agent)
                assert r.status_code == 200, (path, r.text)
                version[rid] = r.json()["version"]
            if i % 2:
                r = await intake.client.post(f"/api/v1/requests/{rid}/accept-delivery", json={}, headers=requester)
                assert r.status_code == 200, r.text
                version[rid] = r.json()["version"]
        for rid in ids:
            await intake.wait_for(rid, version[rid])

        from opsat.common.db import create_engine

        engine = create_engine(intake.settings.database_url)
        projection = RequestsProjection(intake.settings.topic("intake"))
        stats = await rebuild(engine, projection, SERVICE.runner_config(intake.settings, projection.name), "rm_rebuilt")
        total = sum(version.values())
        assert stats.applied == total and stats.parked == 0
        live = await snapshot(engine, projection)
        rebuilt = await snapshot(engine, projection, "rm_rebuilt")
        assert live["requests"] and live["timeline"] and live["links"] and live["time_entries"]
        assert rebuilt == live

        before = (await intake.client.get("/api/v1/requests?limit=200", headers=agent)).json()
        retired = await swap(engine, "rm_rebuilt")
        after = (await intake.client.get("/api/v1/requests?limit=200", headers=agent)).json()
        assert after == before and retired.startswith("read_model_old_")
        await engine.dispose()
