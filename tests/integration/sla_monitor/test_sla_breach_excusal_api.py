"""Breach excusal on the real stack: an agent asks with a reason, the same agent may not approve, a manager
approves with a reason; the breach leaves the compliance figures and stays in the breach list, marked."""

from __future__ import annotations

from opsat.sla_monitor.service import SERVICE as SLA
from tests.integration.sla_monitor.clock_helpers import define_policy, eventually, topics_visible


async def test_an_excused_breach_leaves_compliance_but_stays_visible(intake, run_service, kafka_bootstrap):
    sla = await run_service(SLA)
    await define_policy(sla, "it-blink", first_response_seconds=1, resolution_seconds=3600)
    agent, manager = sla.token("bob", "ops", "agent"), sla.token("carol", "ops", "manager")
    boss_agent = sla.token("carol", "ops", "agent")

    async def breached(rid: str) -> list[dict] | None:
        body = (await sla.client.get("/api/v1/breaches", headers=agent)).json()
        return [b for b in body if b["request_id"] == rid] or None

    async with intake.worker(only=("relay",)):
        await topics_visible(sla, kafka_bootstrap)
        async with sla.worker():
            excused_rid, counted_rid = await intake.submit(), await intake.submit()
            await eventually(lambda: breached(excused_rid))
            await eventually(lambda: breached(counted_rid))
            url = f"/api/v1/clocks/{excused_rid}/excusal"
            r = await sla.client.post(url, headers=agent, json={"target": "response", "cause": "customer",
                                                                "reason": "the customer gave a wrong number"})
            assert r.status_code == 200, r.text
            r = await sla.client.post(f"{url}/approve", headers=agent, json={"target": "response", "reason": "ok"})
            assert r.status_code == 403, r.text  # an agent does not approve
            r = await sla.client.post(f"{url}/approve", headers=boss_agent, json={"target": "response", "reason": "x"})
            assert r.status_code == 403, r.text
            r = await sla.client.post(f"{url}/approve", headers=manager, json={"target": "resolution", "reason": "x"})
            assert r.status_code == 409 and r.json()["type"].endswith("not-breached"), r.text  # nothing stored
            r = await sla.client.post(f"{url}/approve", headers=manager,
                                      json={"target": "response", "reason": "call log confirms it"})
            assert r.status_code == 200, r.text

            async def excused() -> list[dict] | None:
                rows = await breached(excused_rid)
                return rows if rows and rows[0]["excusal"] == "approved" else None

            [row] = await eventually(excused)

    assert row["target"] == "response" and row["breached_at"] is not None
    compliance = (await sla.client.get("/api/v1/compliance?target=response", headers=agent)).json()
    assert compliance == [{"decided": 1, "met_on_time": 0, "excused": 1, "compliance_percent": 0.0}]
    clock = (await sla.client.get(f"/api/v1/clocks/{excused_rid}", headers=agent)).json()
    excusal = clock["targets"]["response"]["excusal"]
    assert (excusal["status"], excusal["requested_by"], excusal["decided_by"]) == ("approved", "bob", "carol")
    # Timer events (warnings, escalations) may interleave; the excusal's two events come in order.
    excusal_events = [e["type"] for e in clock["explanation"] if ".excusal_" in e["type"]]
    assert excusal_events == ["opsat.sla.clock.excusal_requested", "opsat.sla.clock.excusal_approved"]
