"""A period on the real stack: intake's API → intake's and the SLA monitor's topics → appraisal's facts →
scorecards that equal the hand calculation, a drill-down to the exact events, adjustment, publication,
an appeal that re-grades, a late event shown as a pending difference, never folded in, and read models
rebuilt from the topics equal to the live ones.

Alice resolves two requests on time, one of them reopened and resolved again; Bob answers and resolves
one late. The SLA policy has short targets (5 s, 10 s) on the 24×7 calendar, so on time and late are real outcomes
of the SLA monitor's clocks.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import asyncpg

from opsat.appraisal.projections.facts import FactsProjection
from opsat.appraisal.projections.periods import PeriodsProjection
from opsat.appraisal.service import SERVICE as APPRAISAL
from opsat.common.db import create_engine
from opsat.common.projections import rebuild, snapshot
from opsat.common.testing.helpers import rows
from opsat.sla_monitor.service import SERVICE as SLA

RESPONSE_S, RESOLUTION_S = 5, 10
D = Decimal


def cents(x: Decimal) -> Decimal:
    return x.quantize(D("0.01"), rounding=ROUND_HALF_UP)


async def eventually(check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await check()):
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)
    return result


async def step(intake, rid: str, path: str, body: dict | None, headers: dict) -> None:  # type: ignore[no-untyped-def]
    r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=headers)
    assert r.status_code == 200, (path, r.text)


async def event_ids(database_url: str, event_type: str, request_ids: list[str]) -> set[str]:
    found = await rows(database_url, "select event_id::text from events where event_type = $1 and stream_id = any($2)",
                       event_type, request_ids)
    return {r["event_id"] for r in found}


async def test_scorecards_equal_the_hand_calculation_and_drill_down_to_their_events(intake, run_service):
    sla = await run_service(SLA)
    appraisal = await run_service(APPRAISAL)
    admin = sla.token("root", "ops", "admin")
    r = await sla.client.post("/api/v1/policies/quick/define", headers=admin, json={
        "priorities": ["P2"], "customer_tiers": ["standard"], "calendar_id": "24x7",
        "first_response_seconds": RESPONSE_S, "resolution_seconds": RESOLUTION_S})
    assert r.status_code == 200, r.text
    alice, bob = intake.token("alice", "ops", "agent"), intake.token("bob", "ops", "agent")
    requester = intake.token()
    manager, other_manager = appraisal.token("maria", "ops", "manager"), appraisal.token("mo", "ops", "manager")

    for upstream in (intake, sla):  # appraisal's consumers subscribe to topics that exist
        await upstream.service.ensure_topics(upstream.settings)
    async with intake.worker(only=("relay",)), sla.worker(), appraisal.worker():
        # Bob's request first, so that its clock runs while Alice works hers; each of Alice's requests is
        # handled right after its submit, so a slow machine cannot make her late.
        r3 = await intake.submit()
        bob_started = asyncio.get_running_loop().time()
        r1 = await intake.submit()
        for path, body in (("accept", {"team": "network"}), ("start", None), ("resolve", {"solution": "restarted"})):
            await step(intake, r1, path, body, alice)
        r2 = await intake.submit()
        for path, body in (("accept", {"team": "network"}), ("start", None), ("resolve", {"solution": "restarted"})):
            await step(intake, r2, path, body, alice)
        await step(intake, r2, "reject-delivery", {"reason": "still down"}, requester)
        await step(intake, r2, "start", None, alice)
        await step(intake, r2, "resolve", {"solution": "replaced the gateway"}, alice)

        async def at_age(seconds: float) -> None:  # of bob's request
            await asyncio.sleep(max(0.0, bob_started + seconds - asyncio.get_running_loop().time()))
        await at_age(RESPONSE_S + 0.5)
        await step(intake, r3, "accept", {"team": "network"}, bob)
        await step(intake, r3, "start", None, bob)
        await at_age(RESOLUTION_S + 0.5)
        await step(intake, r3, "resolve", {"solution": "patched"}, bob)

        # Both targets of every request decided by the SLA monitor and seen by appraisal.
        async def outcomes() -> list[asyncpg.Record] | None:
            found = await rows(appraisal.settings.database_url,
                                "select request_id, target, on_time from read_model.sla_outcomes")
            resolved = await rows(appraisal.settings.database_url,
                                   "select count(*) from read_model.request_credits where resolved_at is not null")
            return found if len(found) == 6 and resolved[0][0] == 3 else None
        decided = {(r["request_id"], r["target"]): r["on_time"] for r in await eventually(outcomes)}
        assert decided == {(r1, "response"): 1, (r1, "resolution"): 1, (r2, "response"): 1, (r2, "resolution"): 1,
                           (r3, "response"): 0, (r3, "resolution"): 0}

        month = datetime.now(ZoneInfo("Asia/Shanghai")).date().replace(day=1)
        period = f"{month:%Y-%m}"
        r = await appraisal.client.post(f"/api/v1/periods/{period}/open", headers=manager,
                                        json={"starts_on": month.isoformat()})
        assert r.status_code == 200, r.text
        r = await appraisal.client.post(f"/api/v1/periods/{period}/calculate", headers=manager)
        assert r.status_code == 200, r.text
        calculated = r.json()["version"]

        async def card(subject: str) -> dict | None:
            got = await appraisal.client.get(f"/api/v1/periods/{period}/scorecards/{subject}", headers=manager)
            return got.json() if got.status_code == 200 else None

        # By hand, with the default catalogue (no survey answered: CSAT's 25 % is shared by the other 75 %):
        # alice: response 2/2, resolution 2/2 → 100, 100; first-time 1/2 = 50 % → 0 (floor 60);
        #        reopen 1/2 = 50 % → 0 (floor 15); complaints 0 → 100; risks 0 → 100
        #        total = (100×25 + 100×15 + 0×10 + 0×5 + 100×10 + 100×10) / 75 = 80.00 → B
        # bob:   response 0/1, resolution 0/1 → 0, 0; first-time 1/1 → 100; reopen 0 % → 100; 100; 100
        #        total = (0 + 0 + 100×10 + 100×5 + 100×10 + 100×10) / 75 = 46.67 → D
        # team:network: response 2/3, resolution 2/3 = 66.67 % → 0; first-time 2/3 = 66.67 % → 22.22;
        #        reopen 1/3 = 33.33 % → 0; total = (22.22…×10 + 100×10 + 100×10) / 75 = 29.63 → D
        a = await eventually(lambda: card("alice"))
        b = await eventually(lambda: card("bob"))
        t = await eventually(lambda: card("team:network"))
        scores = {x["kpi_id"]: x["score"] for x in a["lines"]}
        assert scores == {"sla_resolution": "100.00", "sla_response": "100.00", "csat": None,
                          "first_time_resolution": "0.00", "reopen_rate": "0.00", "complaints": "100.00",
                          "risk_record": "100.00"}
        assert (a["total"], a["grade"]) == ("80.00", "B")
        assert (b["total"], b["grade"]) == ("46.67", "D")
        ftr = (D(2) / D(3) * 100 - 60) / 30 * 100
        assert (t["total"], t["grade"]) == (str(cents((ftr * 10 + 2000) / 75)), "D")
        assert t["total"] == "29.63"

        # The ranking is the read model's: with the calculation's version it waits (briefly) for it, and an answer
        # not marked stale holds the calculation (read-your-writes); a version not reached yet is answered as it
        # stands, marked stale.
        async def ranked() -> list | None:
            got = await appraisal.client.get(f"/api/v1/periods/{period}/scorecards", headers=manager,
                                             params={"min_version": calculated})
            assert got.status_code == 200, got.text
            return None if got.headers.get("X-Opsat-Stale") else got.json()
        assert [(x["subject"], x["rank"]) for x in await eventually(ranked)] == [("alice", 1), ("bob", 2)]
        ahead = await appraisal.client.get(f"/api/v1/periods/{period}/scorecards", headers=manager,
                                           params={"min_version": calculated + 1})
        assert ahead.headers.get("X-Opsat-Stale") == "true" and len(ahead.json()) == 2, ahead.text

        # The drill-down of alice's resolution compliance lists exactly the events that produced it.
        r = await appraisal.client.get(f"/api/v1/periods/{period}/scorecards/alice/kpis/sla_resolution",
                                       headers=manager)
        assert r.status_code == 200, r.text
        facts = {f["fact"]: f for f in r.json()["facts"]}
        met = await event_ids(sla.settings.database_url, "opsat.sla.clock.resolution_met", [r1, r2])
        latest = await rows(sla.settings.database_url, "select distinct on (stream_id) event_id::text from events "
                             "where event_type = 'opsat.sla.clock.resolution_met' and stream_id = any($1) "
                             "order by stream_id, version desc", [r1, r2])
        assert len(met) == 3  # r2 was resolved twice: the later outcome counts
        assert set(facts["resolution_measured"]["event_ids"]) == {x[0] for x in latest}
        assert facts["resolution_measured"]["amount"] == "2" and facts["resolved_on_time"]["amount"] == "2"
        r = await appraisal.client.get(f"/api/v1/periods/{period}/scorecards/alice/kpis/reopen_rate", headers=manager)
        facts = {f["fact"]: f for f in r.json()["facts"]}
        assert set(facts["reopened"]["event_ids"]) == await event_ids(
            intake.settings.database_url, "opsat.intake.request.reopened", [r2])

        # Every number of every card: the facts summed by PostgreSQL equal those listed event by event.
        for subject, got in (("alice", a), ("bob", b), ("team:network", t)):
            for line in got["lines"]:
                r = await appraisal.client.get(f"/api/v1/periods/{period}/scorecards/{subject}/kpis/"
                                               f"{line['kpi_id']}", headers=manager)
                assert r.json()["matches_card"], r.text
                for fact in r.json()["facts"]:
                    assert line["facts"][fact["fact"]] == fact["amount"]
                    if fact["fact"] in ("resolved", "resolution_measured", "response_measured"):
                        assert len(fact["event_ids"]) == int(fact["amount"])

        # Adjust with a reason, publish, and an appeal by bob amended by another manager re-grades his card.
        r = await appraisal.client.post(f"/api/v1/periods/{period}/adjust", headers=manager,
                                        json={"subject": "bob", "kpi_id": "sla_response", "score": 50, "reason": "  "})
        assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["reason"], r.text
        r = await appraisal.client.post(f"/api/v1/periods/{period}/publish", headers=manager)
        assert r.status_code == 200, r.text
        again = await appraisal.client.post(f"/api/v1/periods/{period}/publish", headers=manager)
        assert again.status_code == 409, again.text
        r = await appraisal.client.post(f"/api/v1/periods/{period}/appeals", headers=appraisal.token("bob", "ops", "agent"),
                                        json={"subject": "bob", "kpi_id": "sla_resolution",
                                              "reason": "the customer was unreachable for a day"})
        assert r.status_code == 200, r.text
        queue = await eventually(lambda: _open_appeals(appraisal, manager))
        [appeal] = queue
        r = await appraisal.client.post(f"/api/v1/periods/{period}/appeals/review", headers=other_manager,
                                        json={"appeal_id": appeal["appeal_id"], "outcome": "amended", "score": 100,
                                              "reason": "the wait was the customer's"})
        assert r.status_code == 200, r.text
        amended = await appraisal.client.get(f"/api/v1/periods/{period}/scorecards/bob", headers=manager)
        line = next(x for x in amended.json()["lines"] if x["kpi_id"] == "sla_resolution")
        assert (line["score"], line["adjusted_from"]) == ("100.00", "0.00")
        # (100×25 + 0 + 1000 + 500 + 1000 + 1000) / 75 = 80.00 → B
        assert (amended.json()["total"], amended.json()["grade"]) == ("80.00", "B")

        # A late resolution by alice after publication shows as pending, the published card unchanged.
        r4 = await intake.submit()
        await step(intake, r4, "accept", {"team": "network"}, alice)
        await step(intake, r4, "start", None, alice)
        await step(intake, r4, "resolve", {"solution": "late one"}, alice)

        async def pending() -> dict | None:
            got = (await appraisal.client.get(f"/api/v1/periods/{period}/scorecards/alice", headers=manager)).json()
            return got if got["pending_differences"] else None
        late = await eventually(pending)
        assert (late["total"], late["grade"]) == ("80.00", "B")
        assert {p["kpi_id"] for p in late["pending_differences"]} >= {"first_time_resolution", "reopen_rate"}

        async def settled() -> bool:  # the live read models have every event before they are compared
            found = await rows(appraisal.settings.database_url, "select (select count(*) from read_model.sla_outcomes)"
                               " = 8 and (select count(*) from read_model.appeals where outcome = 'amended') = 1")
            return found[0][0]
        await eventually(settled)

    # Rebuilt from the topics, the read models equal the live ones: the same ranking, appeals, facts.
    engine = create_engine(appraisal.settings.database_url)
    try:
        for projection, tables in ((FactsProjection(*map(appraisal.settings.topic, FactsProjection.sources)),
                                    ("request_credits", "sla_outcomes")),
                                   (PeriodsProjection(appraisal.settings.topic("appraisal")),
                                    ("periods", "scorecards", "appeals"))):
            config = APPRAISAL.runner_config(appraisal.settings, projection.name)
            await rebuild(engine, projection, config, f"rm_{projection.name}")
            live, rebuilt = (await snapshot(engine, projection), await snapshot(engine, projection,
                                                                                f"rm_{projection.name}"))
            assert all(live[t] for t in tables)
            assert {t: rebuilt[t] for t in tables} == {t: live[t] for t in tables}
    finally:
        await engine.dispose()


async def _open_appeals(appraisal, headers) -> list | None:  # type: ignore[no-untyped-def]
    r = await appraisal.client.get("/api/v1/appeals", headers=headers)
    return r.json() or None
