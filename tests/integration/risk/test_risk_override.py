"""A P1 reached by a later priority override, on the real stack (intake's API -> intake's topic -> the SLA
monitor -> both topics -> the risk service's signal driver).

An incident submitted below P1 and raised to P1 by an override activates the P1 plan as if it had been
submitted P1, naming the engineer on call; lowering and raising it again activates nothing more (once per
plan and request). A service request raised to P1 is no P1 incident, but its breach of the P1 targets the
SLA monitor re-targets it to is a P1 breach: it activates the plan for that request, once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from risk_harness import AUDITOR, LEAD, Risk, breach_ids, topics_visible

from opsat.common.testing.helpers import rows
from opsat.risk.service import SERVICE as RISK
from opsat.sla_monitor.service import SERVICE as SLA

AGENT = ("agent-1", "ops", "agent")


async def override(intake, rid: str, priority: str) -> None:  # type: ignore[no-untyped-def]
    r = await intake.client.post(f"/api/v1/requests/{rid}/priority", json={"priority": priority, "reason": "scope"},
                                 headers=intake.token(*AGENT))
    assert r.status_code == 200, r.text


async def priority_of(intake, rid: str) -> str:  # type: ignore[no-untyped-def]
    """As submitted (the intake worker runs only its relay here: no read model)."""
    [found] = await rows(intake.settings.database_url, "select data->>'priority' as priority from events where"
                         " stream_id = $1 and event_type = 'opsat.intake.request.submitted'", rid)
    return found["priority"]


async def overrides_judged(intake, risk: Risk, n: int) -> bool:  # type: ignore[no-untyped-def]
    ids = [r["event_id"] for r in await rows(intake.settings.database_url, "select event_id::text from events where"
                                             " event_type = 'opsat.intake.request.priority_overridden'")]
    done = await rows(risk.settings.database_url, "select 1 from reactions.processed_events where projection ="
                      " 'risk_signals' and event_id = any($1::text[])", ids)
    return len(ids) == len(done) == n


async def activations(risk: Risk) -> list[str]:
    found = await rows(risk.settings.database_url, "select stream_id from events where event_type = "
                       "'opsat.risk.emergency.activated' order by position")
    return [r["stream_id"] for r in found]


async def test_an_incident_raised_to_p1_activates_the_plan_once_and_a_request_raised_to_p1_on_its_breach(
        intake, run_service):
    sla = await run_service(SLA)
    risk: Risk = await run_service(RISK, harness=Risk)
    monday = (datetime.now(UTC) - timedelta(days=datetime.now(UTC).weekday() + 14)).date().isoformat()
    for rota_id, role, members in (("net-eng", "on_call_engineer", ["ann"]), ("net-duty", "duty_manager", ["max"])):
        r = await risk.client.post(f"/api/v1/rotas/{rota_id}/define", headers=risk.as_(LEAD), json={
            "team": "network", "role": role, "starts_on": monday, "members": members, "time_zone": "Asia/Shanghai"})
        assert r.status_code == 200, r.text
    # Service requests run around the clock (a re-target keeps the calendar); their P1 targets breach at once, so
    # the request re-targeted to them breaches as a P1 request.
    for policy_id, priorities, response_s, resolution_s in (("sr-24x7", ["P2", "P3", "P4"], 3600, 7200),
                                                            ("p1-blink", ["P1"], 1, 2)):
        r = await sla.client.post(f"/api/v1/policies/{policy_id}/define", headers=sla.token("root", "ops", "admin"),
                                  json={"kinds": ["service_request"], "priorities": priorities,
                                        "customer_tiers": ["standard"], "calendar_id": "24x7",
                                        "first_response_seconds": response_s, "resolution_seconds": resolution_s})
        assert r.status_code == 200, r.text
    await topics_visible(intake, sla, risk)

    async def emergencies() -> list[dict]:
        return await risk.get("/api/v1/emergencies", AUDITOR)

    async with intake.worker(only=("relay",)), sla.worker():
        async with risk.worker():
            incident = await intake.submit(team="network", kind="incident", impact=3, urgency=3)
            assert await priority_of(intake, incident) != "P1"
            await override(intake, incident, "P1")
            [emergency] = await risk.eventually(lambda: _some(emergencies()))
            raised = (await rows(intake.settings.database_url, "select event_id::text from events where event_type"
                                 " = 'opsat.intake.request.priority_overridden'"))[0]["event_id"]
            assert emergency["trigger"] == {"event_id": raised, "event_type": "opsat.intake.request.priority_overridden",
                                            "request_id": incident, "priority": "P1"}
            assert emergency["plan_id"] == "p1-major-incident" and emergency["status"] == "active"
            assert [s["assignee"] for s in emergency["steps"]] == ["ann", "max", "max", "ann"]

            await override(intake, incident, "P2")
            await override(intake, incident, "P1")
            await risk.eventually(lambda: overrides_judged(intake, risk, 3))
            assert len(await activations(risk)) == 1

            request = await intake.submit(team="network", kind="service_request", impact=3, urgency=3)
            assert await priority_of(intake, request) != "P1"
            await override(intake, request, "P1")
            await risk.eventually(lambda: overrides_judged(intake, risk, 4))
            two = await risk.eventually(lambda: _at_least(breach_ids(sla, [request]), 2))

            async def judged() -> bool:
                found = await rows(risk.settings.database_url, "select 1 from reactions.signal_observations"
                                   " where event_id = any($1::text[])", two)
                return len(found) == 2

            await risk.eventually(judged)
            await asyncio.sleep(0.5)
    found = {e["trigger"]["request_id"]: e for e in await emergencies()}
    assert sorted(found) == sorted([incident, request]) and len(await activations(risk)) == 2
    assert found[request]["trigger"]["event_id"] == two[0]
    assert found[request]["trigger"]["event_type"] == "opsat.sla.clock.breached"


async def _some(found):  # type: ignore[no-untyped-def]
    return (await found) or None


async def _at_least(ids, n: int):  # type: ignore[no-untyped-def]
    found = await ids
    return found if len(found) >= n else None
