"""A projection rebuilt from the topic equals the live one, and can be swapped in."""

from __future__ import annotations

from opsat.common.projections import rebuild, rebuild_and_swap, snapshot, swap
from opsat.common.testing.helpers import scalar
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

        # Mark one row that only the rebuilt schema has, to tell after the swap which data is live.
        db = intake.settings.database_url
        await scalar(db, "update rm_rebuilt.requests set title = 'rebuilt only' where id = $1", ids[0])
        before = (await intake.client.get("/api/v1/requests?limit=200", headers=agent)).json()
        retired = await swap(engine, "rm_rebuilt")
        after = (await intake.client.get("/api/v1/requests?limit=200", headers=agent)).json()
        await engine.dispose()

        assert retired.startswith("read_model_old_")
        schemas = await scalar(db, "select array_agg(nspname::text) from pg_namespace where nspname like 'r%'")
        assert "rm_rebuilt" not in schemas and retired in schemas and "read_model" in schemas
        assert await scalar(db, "select title from read_model.requests where id = $1", ids[0]) == "rebuilt only"
        assert await scalar(db, f'select title from "{retired}".requests where id = $1', ids[0]) == "request 0"
        # the API reads the swapped-in data: the marked row, everything else as before
        marked = {item["id"]: item for item in after["items"]}[ids[0]]
        assert marked["title"] == "rebuilt only"
        assert [{**item, "title": "request 0"} if item["id"] == ids[0] else item for item in after["items"]] \
            == before["items"]
        view = await intake.client.get(f"/api/v1/requests/{ids[0]}", headers=agent)
        assert view.status_code == 200 and view.json()["title"] == "rebuilt only", view.text


async def test_a_read_model_whose_timeline_keeps_payloads_as_jsonb_takes_events_and_swaps_to_json(intake):
    """Read models built before the timeline's payloads were kept as `json` have `jsonb` there: the projection's
    writes fill it as they fill `json`, and the API shows the payloads as published. A rebuild swaps in `json`: the
    API's statements prepared on `jsonb` fail once (asyncpg: "cached statement plan is invalid"), and that is a 503 to
    retry, never a 500."""
    db = intake.settings.database_url
    await scalar(db, "alter table read_model.timeline alter column data type jsonb using data::jsonb")
    agent = intake.token("agent-1", "ops", "agent")
    async with intake.worker(only=("relay", "projection")):
        rid = await intake.submit(title="printer", description="toner ✓ \"quoted\"")
        r = await intake.client.post(f"/api/v1/requests/{rid}/notes", json={"body": "ordered é"}, headers=agent)
        assert r.status_code == 200, r.text
        await intake.wait_for(rid, 2)
        before = [(await intake.client.get(f"/api/v1/requests/{rid}/timeline", headers=agent)) for _ in range(8)]
        column = await scalar(db, "select data_type from information_schema.columns where table_schema = 'read_model'"
                                  " and table_name = 'timeline' and column_name = 'data'")

        from opsat.common.db import create_engine

        engine = create_engine(db)
        projection = RequestsProjection(intake.settings.topic("intake"))
        await rebuild_and_swap(engine, [(projection, SERVICE.runner_config(intake.settings, projection.name))],
                               "rm_json", progress=lambda line: None)
        await engine.dispose()
        after = [(await intake.client.get(f"/api/v1/requests/{rid}/timeline", headers=agent)) for _ in range(8)]
    assert column == "jsonb"
    assert await scalar(db, "select data_type from information_schema.columns where table_schema = 'read_model'"
                            " and table_name = 'timeline' and column_name = 'data'") == "json"
    assert {r.status_code for r in before} == {200}
    assert [e["data"].get("description") or e["data"].get("body") for e in before[0].json()] == [
        "toner ✓ \"quoted\"", "ordered é"]
    assert {r.status_code for r in after} <= {200, 503}, [(r.status_code, r.text) for r in after]
    assert after[-1].status_code == 200 and after[-1].json() == before[0].json()
