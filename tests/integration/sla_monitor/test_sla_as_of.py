"""As-of queries on the real stack: one request's SLA state and the at-risk queue as they were at a past
instant, after the request has since been resolved; and the same request in the MTTA / MTTR figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from opsat.sla_monitor.service import SERVICE as SLA
from tests.integration.sla_monitor.clock_helpers import clock, define_policy, eventually, topics_visible


async def test_a_clock_and_the_at_risk_queue_as_they_were_before_the_resolve(intake, run_service, kafka_bootstrap):
    sla = await run_service(SLA)
    await define_policy(sla, "it-blink", first_response_seconds=1, resolution_seconds=2)
    agent = sla.token("bob", "ops", "agent")

    async def queue(as_of: datetime | None = None) -> list[dict]:
        query = f"?as_of={quote(as_of.isoformat())}" if as_of else ""
        r = await sla.client.get(f"/api/v1/at-risk{query}", headers=agent)
        assert r.status_code == 200, r.text
        return r.json()

    async def clock_as_of(rid: str, as_of: datetime):  # type: ignore[no-untyped-def]
        return await sla.client.get(f"/api/v1/clocks/{rid}?as_of={quote(as_of.isoformat())}", headers=agent)

    before = datetime.now(UTC) - timedelta(seconds=1)
    async with intake.worker(only=("relay",)):
        await topics_visible(sla, kafka_bootstrap)
        async with sla.worker():
            rid = await intake.submit(team="desk")

            async def both_breached() -> list[dict] | None:
                rows = [r for r in await queue() if r["request_id"] == rid and r["breached_at"]]
                return rows if len(rows) == 2 else None

            await eventually(both_breached)
            breached = datetime.now(UTC)
            for path, body in (("accept", {}), ("start", None), ("resolve", {"solution": "patched"})):
                r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body,
                                             headers=intake.token("agent-1", "ops", "agent"))
                assert r.status_code == 200, r.text

            async def met() -> dict | None:
                state = await clock(sla, rid)
                return state if state and state["status"] == "met" else None

            await eventually(met)

            async def left_the_queue() -> bool:  # the read model follows the clock's stream a moment later
                return rid not in {r["request_id"] for r in await queue()}

            await eventually(left_the_queue)

    then = [r for r in await queue(breached) if r["request_id"] == rid]
    assert [(r["target"], r["breached"]) for r in then] == [("response", True), ("resolution", True)]
    assert all(r["time_left_seconds"] < 0 for r in then)

    past = (await clock_as_of(rid, breached)).json()
    assert past["status"] == "running" and past["targets"]["resolution"]["met_at"] is None
    assert past["targets"]["resolution"]["breached"] and past["explanation"][-1]["type"] != \
        "opsat.sla.clock.resolution_met"
    assert (await clock_as_of(rid, before)).status_code == 404  # no clock yet at that instant
    r = await sla.client.get(f"/api/v1/clocks/{rid}?as_of=1700000000", headers=agent)
    assert r.status_code == 422  # ISO 8601 only

    # The same request in the response-time figures: MTTA to the accept, MTTR to the resolve.
    now = await clock(sla, rid)
    started = datetime.fromisoformat(now["started_at"])
    took = {n: (datetime.fromisoformat(now["targets"][n]["met_at"]) - started).total_seconds()
            for n in ("response", "resolution")}
    r = await sla.client.get("/api/v1/metrics/response-times?group_by=team&group_by=priority", headers=agent)
    assert r.status_code == 200, r.text
    assert r.json() == [{"team": "desk", "priority": "P2", "acknowledged": 1, "resolved": 1,
                         "mtta_seconds": round(took["response"], 3), "mttr_seconds": round(took["resolution"], 3)}]
    later = quote((datetime.now(UTC) + timedelta(hours=1)).isoformat())
    assert (await sla.client.get(f"/api/v1/metrics/response-times?since={later}", headers=agent)).json() == []
