"""Risk signals on the real stack, driven the realistic way: intake's API -> intake's topic -> the SLA monitor
(short test-configured targets) -> `opsat.sla.events` -> the risk service's signal driver.

Three SLA breaches of one team within the window raise exactly one risk whose evidence lists the three
breach event ids; a fourth re-scores it; replaying both upstream topics from the start (with the driver's
dedupe rows gone too) creates nothing new. A P1 breach activates the matching emergency plan once, naming
the engineer on call at that moment.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from risk_harness import AUDITOR, LEAD, Risk, breach_ids, define_policy, topics_visible

from opsat.common import observability as obs
from opsat.common.testing.helpers import rows
from opsat.common.testing.infra import reset_group_to_earliest
from opsat.risk.service import SERVICE as RISK
from opsat.sla_monitor.service import SERVICE as SLA


async def the_risks(risk: Risk) -> list[dict]:
    return (await risk.get("/api/v1/risks"))["items"]


def applied() -> float:
    """Upstream records the driver has taken in: applied, or passed over (not among the events it handles)."""
    return sum(obs.EVENTS_APPLIED.labels("risk_signals", outcome)._value.get() for outcome in ("applied", "ignored"))


async def test_three_breaches_raise_one_risk_a_fourth_re_scores_it_and_a_replay_creates_nothing(
        intake, run_service, kafka_bootstrap):
    sla = await run_service(SLA)
    risk: Risk = await run_service(RISK, harness=Risk)
    await define_policy(sla, "p2-blink", "P2", 3600, 1)  # only the resolution target breaches, after 1 s
    requests: list[str] = []
    await topics_visible(intake, sla, risk)
    async with intake.worker(only=("relay",)), sla.worker():
        async with risk.worker():
            for _ in range(3):
                requests.append(await intake.submit(team="network"))

            async def raised() -> dict | None:
                found = await the_risks(risk)
                return found[0] if len(found) == 1 and found[0]["score"] else None

            first = await risk.eventually(raised)
            detail = await risk.get(f"/api/v1/risks/{first['risk_id']}")
            assert (detail["subject_type"], detail["subject"], detail["source"], detail["rule_id"]) == (
                "team", "network", "signal", "sla-breaches-team")
            assert (detail["likelihood"], detail["impact"], detail["score"], detail["level"]) == (3, 3, 9, "medium")
            three = await breach_ids(sla, requests)
            assert len(three) == 3 and sorted(detail["evidence"]) == sorted(three)

            requests.append(await intake.submit(team="network"))

            async def rescored() -> dict | None:
                found = await the_risks(risk)
                return found if any(r["score"] == 12 for r in found) else None

            found = await risk.eventually(rescored)
            assert [r["risk_id"] for r in found] == [first["risk_id"]]  # re-scored, never a second risk
            detail = await risk.get(f"/api/v1/risks/{first['risk_id']}")
            four = await breach_ids(sla, requests)
            assert sorted(detail["evidence"]) == sorted(four) and len(four) == 4
            assert (detail["likelihood"], detail["level"], detail["assessments"]) == (4, "high", 2)
            assert [h["score"] for h in detail["history"]] == [None, None, 9, 9, 12]

    # Replay both upstream topics from the start, with the driver's dedupe rows gone too.
    events_before = len(await rows(risk.settings.database_url, "select 1 from events"))
    upstream = (len(await rows(intake.settings.database_url, "select 1 from events")) +
                len(await rows(sla.settings.database_url, "select 1 from events")))
    await rows(risk.settings.database_url, "delete from reactions.processed_events where projection = 'risk_signals'")
    group = risk.service.runner_config(risk.settings, "risk_signals").group_id
    for source in ("intake", "sla"):
        await reset_group_to_earliest(kafka_bootstrap, group, risk.settings.topic(source), 6)
    before = applied()
    async with risk.worker(only=("reaction",)):
        await risk.eventually(lambda: _true(applied() >= before + upstream))
        await asyncio.sleep(1.0)  # time for anything wrongly caused to reach the store
    assert len(await rows(risk.settings.database_url, "select 1 from events")) == events_before
    assert len(await the_risks(risk)) == 1


async def test_a_p1_breach_activates_the_matching_plan_once_naming_the_engineer_on_call(
        intake, run_service, kafka_bootstrap):
    sla = await run_service(SLA)
    risk: Risk = await run_service(RISK, harness=Risk)
    await define_policy(sla, "p1-blink", "P1", 1, 2)  # both targets breach: two P1 breaches of one request
    monday = (datetime.now(UTC) - timedelta(days=datetime.now(UTC).weekday() + 14)).date().isoformat()
    for rota_id, role, members in (("net-eng", "on_call_engineer", ["ann", "bo"]), ("net-duty", "duty_manager",
                                                                                     ["max"])):
        r = await risk.client.post(f"/api/v1/rotas/{rota_id}/define", headers=risk.as_(LEAD), json={
            "team": "network", "role": role, "starts_on": monday, "members": members, "time_zone": "Asia/Shanghai"})
        assert r.status_code == 200, r.text
    now = datetime.now(UTC)
    r = await risk.client.post("/api/v1/rotas/net-eng/overrides", headers=risk.as_(LEAD), json={
        "person": "cy", "start": (now - timedelta(hours=1)).isoformat(), "end": (now + timedelta(hours=1)).isoformat(),
        "reason": "swap"})
    assert r.status_code == 200, r.text

    await topics_visible(intake, sla, risk)
    async with intake.worker(only=("relay",)), sla.worker():
        async with risk.worker():
            rid = await intake.submit(team="network", kind="service_request", impact=1, urgency=1)
            two = await risk.eventually(lambda: _at_least(breach_ids(sla, [rid]), 2))

            async def activated() -> list[dict] | None:
                found = await risk.get("/api/v1/emergencies", AUDITOR)
                return found or None

            [emergency] = await risk.eventually(activated)
            # Both breaches reached the driver before we count activations.
            await risk.eventually(lambda: _observed(risk, two))
            await asyncio.sleep(0.5)
    activations = await rows(risk.settings.database_url, "select stream_id from events where event_type = "
                             "'opsat.risk.emergency.activated'")
    assert [r["stream_id"] for r in activations] == [emergency["emergency_id"]]
    assert emergency["plan_id"] == "p1-major-incident" and emergency["status"] == "active"
    assert emergency["trigger"]["event_id"] == two[0] and emergency["trigger"]["request_id"] == rid
    assert [(s["step_id"], s["assignee"]) for s in emergency["steps"]] == [
        ("triage", "cy"), ("command", "max"), ("communicate", "max"), ("restore", "cy")]
    [p1_risk] = await the_risks(risk)
    assert (p1_risk["rule_id"], p1_risk["subject"], p1_risk["impact"]) == ("p1-breach", "network", 5)


async def _observed(risk: Risk, event_ids: list[str]) -> bool:
    found = await rows(risk.settings.database_url, "select event_id from reactions.signal_observations"
                       " where event_id = any($1::text[])", event_ids)
    return len(found) == len(event_ids)


async def _at_least(ids, n: int):  # type: ignore[no-untyped-def]
    found = await ids
    return found if len(found) >= n else None


async def _true(value: bool) -> bool:
    return value
