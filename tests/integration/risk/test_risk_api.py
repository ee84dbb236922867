"""The risk service's API on the real stack: roles, bad input (problem+json naming the field, nothing stored)
and the queries over the read model (register now and as it was, heat map, top risks, per subject, trend,
emergencies with progress, on-call now and over a span).

Only risk officers (and administrators) accept a risk or stand an emergency down; auditors read everything
and change nothing. Every refusal appends nothing (events counted in PostgreSQL).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from risk_harness import ADMIN, AGENT, AUDITOR, LEAD, MANAGER, OFFICER, REQUESTER, topics_visible

PROBLEM_JSON = "application/problem+json"
RISK_BODY = {"title": "Backup window overruns", "category": "capacity", "description": "nightly backup ends at 08:30",
             "subject_type": "service", "subject": "backup", "owner": "lead-1", "likelihood": 3, "impact": 4}


def problem_field(response) -> str:  # type: ignore[no-untyped-def]
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.text
    return response.json()["errors"][0]["field"]


async def identify(risk, who=LEAD, **overrides) -> str:  # type: ignore[no-untyped-def]
    r = await risk.client.post("/api/v1/risks", json={**RISK_BODY, **overrides}, headers=risk.as_(who))
    assert r.status_code == 201, r.text
    return r.json()["risk_id"]


async def post(risk, path: str, body, who):  # type: ignore[no-untyped-def]
    return await risk.client.post(path, json=body, headers=risk.as_(who))


async def test_only_risk_officers_accept_and_stand_down_and_auditors_change_nothing(risk):
    rid = await identify(risk)
    before = await risk.events()
    for who in (AGENT, LEAD, MANAGER, AUDITOR, REQUESTER):
        r = await post(risk, f"/api/v1/risks/{rid}/accept", {"rationale": "tolerable"}, who)
        assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM_JSON), (who, r.text)
    for path, body in (("/api/v1/risks", RISK_BODY), (f"/api/v1/risks/{rid}/assess",
                                                      {"likelihood": 1, "impact": 1, "rationale": "x"}),
                       (f"/api/v1/risks/{rid}/close", {"reason": "x"}),
                       ("/api/v1/emergencies", {"plan_id": "p1-major-incident", "reason": "drill"}),
                       ("/api/v1/rules/sla-breaches-team/define", {"source": "sla_breach", "subject": "team",
                                                                   "threshold": 2, "window_seconds": 60}),
                       ("/api/v1/rotas/net/define", {"team": "network", "starts_on": "2026-11-02",
                                                     "members": ["a"]})):
        r = await post(risk, path, body, AUDITOR)
        assert r.status_code == 403, (path, r.text)
    assert await risk.events() == before  # refusals stored nothing
    r = await post(risk, f"/api/v1/risks/{rid}/accept", {"rationale": "tolerable until Q2"}, OFFICER)
    assert r.status_code == 200 and r.json()["version"] == 3, r.text
    r = await post(risk, f"/api/v1/risks/{rid}/close", {"reason": "late"}, ADMIN)
    assert r.status_code == 409 and problem_field(r) == "status"

    r = await post(risk, "/api/v1/emergencies", {"plan_id": "p1-major-incident", "reason": "drill"}, MANAGER)
    assert r.status_code == 201, r.text
    eid = r.json()["emergency_id"]
    for who in (AGENT, LEAD, MANAGER, AUDITOR):
        r = await post(risk, f"/api/v1/emergencies/{eid}/stand-down", {"summary": "over"}, who)
        assert r.status_code == 403, (who, r.text)
    r = await post(risk, f"/api/v1/emergencies/{eid}/stand-down", {"summary": "drill over"}, OFFICER)
    assert r.status_code == 200, r.text
    before = await risk.events()
    r = await post(risk, f"/api/v1/emergencies/{eid}/stand-down", {"summary": "again"}, OFFICER)
    assert r.status_code == 409 and problem_field(r) == "status"
    assert await risk.events() == before

    await topics_visible(risk)
    async with risk.worker(only=("relay", "projection")):  # auditors read everything
        await risk.eventually(lambda: _register_has(risk, 1))
        for path in ("/api/v1/risks", f"/api/v1/risks/{rid}", "/api/v1/heat-map", "/api/v1/top-risks",
                     "/api/v1/risks-by-subject", "/api/v1/trend", "/api/v1/emergencies", f"/api/v1/emergencies/{eid}",
                     "/api/v1/rules", "/api/v1/plans", "/api/v1/rotas", "/api/v1/on-call"):
            r = await risk.client.get(path, headers=risk.as_(AUDITOR))
            assert r.status_code == 200, (path, r.text)
            r = await risk.client.get(path, headers=risk.as_(REQUESTER))
            assert r.status_code == 403, (path, r.text)


async def _register_has(risk, n: int):  # type: ignore[no-untyped-def]
    return len((await risk.get("/api/v1/risks"))["items"]) >= n


BAD_INPUT = [
    ("/api/v1/risks", {**RISK_BODY, "likelihood": 6}, 422, "likelihood"),
    ("/api/v1/risks", {**RISK_BODY, "impact": 0}, 422, "impact"),
    ("/api/v1/risks", {**RISK_BODY, "category": "weather"}, 422, "category"),
    ("/api/v1/rules/csat-team/define", {"source": "feedback_response", "subject": "team", "mode": "mean_below",
                                        "threshold": 70, "last_n": 0}, 422, "last_n"),
    ("/api/v1/rules/sla-breaches-team/define", {"source": "sla_breach", "subject": "team", "threshold": 3,
                                                "window_seconds": 0}, 422, "window_seconds"),
    ("/api/v1/rules/sla-breaches-team/define", {"source": "sla_breach", "subject": "team", "threshold": 3,
                                                "window_seconds": -5}, 422, "window_seconds"),
    ("/api/v1/rotas/net/define", {"team": "network", "starts_on": "2026-11-02", "members": ["a"],
                                  "time_zone": "Mars/Base"}, 422, "time_zone"),
    ("/api/v1/emergencies", {"plan_id": "no-such-plan", "reason": "x"}, 404, "plan_id"),
    ("/api/v1/emergencies", {"plan_id": "p1-major-incident", "reason": "x", "since": 0}, 422, "since"),
]


async def test_bad_input_is_a_problem_naming_the_field_and_stores_nothing(risk):
    for path, body, status, field in BAD_INPUT:
        who = OFFICER if "rules" in path or "emergencies" in path else LEAD
        r = await post(risk, path, body, who)
        assert r.status_code == status and problem_field(r).endswith(field), (path, body, r.text)
    for params, field in (({"as_of": "0"}, "as_of"), ({"as_of": "2026-01-01T00:00:00"}, "as_of"),
                          ({"limit": 0}, "limit"), ({"cursor": "bogus"}, "cursor")):
        r = await risk.client.get("/api/v1/risks", params=params, headers=risk.as_(AUDITOR))
        assert r.status_code == 422 and problem_field(r).endswith(field), (params, r.text)
    assert await risk.events() == 0


async def test_assessment_steps_and_overrides_refuse_bad_input_and_store_nothing(risk):
    rid = await identify(risk)
    before = await risk.events()
    r = await post(risk, f"/api/v1/risks/{rid}/assess", {"likelihood": 9, "impact": 2, "rationale": "x"}, LEAD)
    assert r.status_code == 422 and problem_field(r).endswith("likelihood")
    r = await post(risk, "/api/v1/emergencies", {"plan_id": "p1-major-incident", "reason": "drill"}, OFFICER)
    eid = r.json()["emergency_id"]
    before = await risk.events()
    r = await post(risk, f"/api/v1/emergencies/{eid}/complete-step", {"step_id": "dance"}, AGENT)
    assert r.status_code == 422 and problem_field(r) == "step_id"
    r = await post(risk, f"/api/v1/emergencies/{eid}/complete-step", {"step_id": "triage", "note": "bridge"}, AGENT)
    assert r.status_code == 200, r.text
    r = await post(risk, f"/api/v1/emergencies/{eid}/complete-step", {"step_id": "triage"}, AGENT)
    assert r.status_code == 409 and problem_field(r) == "step_id"
    assert await risk.events() == before + 1

    r = await post(risk, "/api/v1/rotas/net/define", {"team": "network", "starts_on": "2026-11-02",
                                                      "members": ["ann", "bo"]}, LEAD)
    assert r.status_code == 200, r.text
    start = datetime(2026, 12, 1, 9, tzinfo=UTC)
    override = {"person": "cy", "start": start.isoformat(), "end": (start + timedelta(hours=8)).isoformat()}
    assert (await post(risk, "/api/v1/rotas/net/overrides", override, LEAD)).status_code == 200
    before = await risk.events()
    clash = {**override, "start": (start + timedelta(hours=7)).isoformat(),
             "end": (start + timedelta(hours=9)).isoformat()}
    r = await post(risk, "/api/v1/rotas/net/overrides", clash, LEAD)
    assert r.status_code == 409 and problem_field(r) == "start"
    r = await post(risk, "/api/v1/rotas/net/overrides", {**override, "start": "2026-12-01T09:00:00"}, LEAD)
    assert r.status_code == 422 and problem_field(r).endswith("start")
    assert await risk.events() == before

    shanghai_11am = "2026-12-01T11:00:00+08:00"  # Tuesday 1 Dec: hand-over was Monday 09:00; ann's 5th week
    [now] = await risk.get("/api/v1/on-call", at=shanghai_11am, team="network")
    assert now["person"] == "ann"
    [now] = await risk.get("/api/v1/on-call", at=start.isoformat(), team="network")
    assert now["person"] == "cy"  # the override
    [plan] = await risk.get("/api/v1/on-call/schedule", start="2026-11-30T00:00:00+00:00",
                            end="2026-12-08T00:00:00+00:00", team="network")
    assert [(s["person"], s["override_id"] is not None) for s in plan["shifts"]] == [
        ("bo", False), ("ann", False), ("cy", True), ("ann", False), ("bo", False)]


async def test_register_queries_filters_pages_as_of_heat_map_trend_and_emergencies(risk):
    ids = []
    for i, (likelihood, impact, subject) in enumerate([(5, 5, "mail"), (4, 4, "mail"), (3, 4, "vpn"), (1, 2, "vpn"),
                                                       (2, 2, "wiki")]):
        ids.append(await identify(risk, title=f"risk {i}", likelihood=likelihood, impact=impact, subject=subject))
        await asyncio.sleep(0.01)
    await topics_visible(risk)
    async with risk.worker(only=("relay", "projection")):
        await risk.eventually(lambda: _register_has(risk, 5))
        between = datetime.now(UTC)
        await asyncio.sleep(0.05)
        r = await post(risk, f"/api/v1/risks/{ids[0]}/assess", {"likelihood": 2, "impact": 5, "rationale": "fix in"},
                       LEAD)
        assert r.status_code == 200
        r = await post(risk, f"/api/v1/risks/{ids[4]}/close", {"reason": "wiki retired"}, LEAD)
        assert r.status_code == 200
        r = await post(risk, "/api/v1/emergencies", {"plan_id": "p1-major-incident", "reason": "mail down"}, OFFICER)
        eid = r.json()["emergency_id"]
        await post(risk, f"/api/v1/emergencies/{eid}/complete-step", {"step_id": "triage"}, AGENT)

        async def caught_up():  # type: ignore[no-untyped-def]
            em = await risk.get(f"/api/v1/emergencies/{eid}") if (await risk.client.get(
                f"/api/v1/emergencies/{eid}", headers=risk.as_(AUDITOR))).status_code == 200 else None
            closed = await risk.get("/api/v1/risks", status="closed")
            return em and em["steps_done"] == 1 and closed["items"]

        await risk.eventually(caught_up)

    page1 = await risk.get("/api/v1/risks", limit=2)
    page2 = await risk.get("/api/v1/risks", limit=2, cursor=page1["next_cursor"])
    page3 = await risk.get("/api/v1/risks", limit=2, cursor=page2["next_cursor"])
    scores = [i["score"] for p in (page1, page2, page3) for i in p["items"]]
    assert scores == [16, 12, 10, 4, 2] and page3["next_cursor"] is None
    assert [i["risk_id"] for i in (await risk.get("/api/v1/risks", subject="vpn", level="high"))["items"]] == [ids[2]]
    assert len((await risk.get("/api/v1/risks", open_only="true"))["items"]) == 4

    then = await risk.get("/api/v1/risks", as_of=between.isoformat())
    assert sorted(i["score"] for i in then["items"]) == [2, 4, 12, 16, 25]  # before the reassessment and closing
    assert all(i["status"] == "assessed" for i in then["items"])
    assert (await risk.get("/api/v1/risks", as_of="2000-01-01T00:00:00Z"))["items"] == []
    detail = await risk.get(f"/api/v1/risks/{ids[0]}")
    assert [h["score"] for h in detail["history"]] == [None, 25, 10]  # identified, assessed, reassessed

    heat = await risk.get("/api/v1/heat-map")
    assert heat["cells"][3][1] == 0  # the closed wiki risk (likelihood 2, impact 2) is not open
    assert heat["cells"][0][4] == 0 and heat["cells"][3][4] == 1 and heat["cells"][1][3] == 1  # 2×5, 4×4
    assert sum(map(sum, heat["cells"])) == 4
    assert sum(map(sum, (await risk.get("/api/v1/heat-map", as_of=between.isoformat()))["cells"])) == 5
    assert [t["score"] for t in await risk.get("/api/v1/top-risks", limit=3)] == [16, 12, 10]
    by_subject = {(s["subject_type"], s["subject"]): s for s in await risk.get("/api/v1/risks-by-subject")}
    assert by_subject[("service", "mail")]["total_score"] == 26 and ("service", "wiki") not in by_subject
    today = datetime.now(UTC).date()
    trend = await risk.get("/api/v1/trend", since=(today - timedelta(days=2)).isoformat(), until=today.isoformat())
    assert [t["total_score"] for t in trend] == [0, 0, 16 + 12 + 10 + 2]

    [open_one] = await risk.get("/api/v1/emergencies", status="active")
    assert open_one["emergency_id"] == eid and open_one["progress_percent"] == 25.0
    assert open_one["elapsed_seconds"] > 0 and open_one["steps"][0]["completed_by"] == "agent-1"
