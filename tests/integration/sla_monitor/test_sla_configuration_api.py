"""Calendars and policies through the SLA monitor's API on the real stack: versions, published events, and
bad input refused as problem+json naming the field, with nothing stored."""

from __future__ import annotations

import json

import asyncpg

from opsat.common.db import asyncpg_dsn
from opsat.common.testing.infra import consume_all
from opsat.sla_monitor.service import SERVICE as SLA


async def stored_events(sla) -> int:  # type: ignore[no-untyped-def]
    conn = await asyncpg.connect(asyncpg_dsn(sla.settings.database_url))
    try:
        return await conn.fetchval("select count(*) from events")
    finally:
        await conn.close()


async def test_an_administrator_adds_next_years_days_and_the_change_is_published(run_service, kafka_bootstrap):
    sla = await run_service(SLA)
    admin = sla.token("root", "ops", "admin")
    r = await sla.client.post("/api/v1/calendars/cn-default/days", headers=admin,
                              json={"holidays": ["2027-01-01"], "makeup_workdays": ["2027-02-07"]})
    assert r.status_code == 200, r.text
    assert r.json()["calendar_id"] == "cn-default"
    calendar = (await sla.client.get("/api/v1/calendars/cn-default", headers=admin)).json()
    assert calendar["version"] == 2 and "2027-01-01" in calendar["holidays"] and "2027-02-07" in \
        calendar["makeup_workdays"]

    split = {"time_zone": "Asia/Hong_Kong", "hours": {"mon": [["09:00", "12:00"], ["13:30", "18:00"]]}}
    r = await sla.client.post("/api/v1/calendars/hk-office/define", headers=admin, json=split)
    assert r.status_code == 200, r.text
    listed = {c["calendar_id"]: c["version"] for c in
              (await sla.client.get("/api/v1/calendars", headers=sla.token("bob", "ops", "agent"))).json()}
    assert listed == {"cn-default": 2, "24x7": 1, "hk-office": 1}

    # Calendar and policy ids share one namespace: a policy's id is no calendar, and cannot become one.
    r = await sla.client.post("/api/v1/policies/gold/define", headers=admin,
                              json={"first_response_seconds": 600, "resolution_seconds": 3600})
    assert r.status_code == 200, r.text
    assert (await sla.client.get("/api/v1/calendars/gold", headers=admin)).status_code == 404
    r = await sla.client.post("/api/v1/calendars/gold/days", headers=admin, json={"holidays": ["2027-01-01"]})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "calendar_id"
    policies = {p["policy_id"]: p["version"] for p in (await sla.client.get("/api/v1/policies", headers=admin)).json()}
    assert policies == {"gold": 1, "p1": 1, "p2": 1, "p3": 1, "p4": 1}

    async with sla.worker(only=("relay",)):
        records = await consume_all(kafka_bootstrap, sla.settings.topic("sla"), min_count=3)
    types = sorted(json.loads(r.value)["type"] for r in records)
    assert types == ["opsat.sla.calendar.days_added.v1", "opsat.sla.calendar.defined.v1", "opsat.sla.policy.defined.v1"]


async def test_bad_configuration_is_a_problem_naming_the_field_and_nothing_is_stored(run_service):
    sla = await run_service(SLA)
    admin = sla.token("root", "ops", "admin")
    cases = [
        ("calendars/x1/define", {"hours": {"mon": [["09:00", "12:30"], ["12:00", "18:00"]]}}, 422, "hours.mon"),
        ("calendars/x1/define", {"hours": {"tue": [["18:00", "09:00"]]}}, 422, "hours.tue[0]"),
        ("calendars/x1/define", {"time_zone": "Asia/Atlantis", "hours": {"mon": [["09:00", "18:00"]]}}, 422,
         "time_zone"),
        ("calendars/x1/define", {"hours": {"mon": [["09:00", "18:00"]]}, "holidays": ["2027-01-02"],
                                 "makeup_workdays": ["2027-01-02"]}, 422, "makeup_workdays"),
        ("calendars/cn-default/days", {"holidays": ["2026-09-20"]}, 422, "makeup_workdays"),
        ("calendars/nowhere/days", {"holidays": ["2027-01-01"]}, 404, "calendar_id"),
        ("policies/gold/define", {"first_response_seconds": 0, "resolution_seconds": 60}, 422,
         "first_response_seconds"),
        ("policies/gold/define", {"first_response_seconds": 60, "resolution_seconds": 60,
                                  "warning_thresholds": [80, 50]}, 422, "warning_thresholds"),
        ("policies/gold/define", {"first_response_seconds": 60, "resolution_seconds": 60, "kinds": ["party"]}, 422,
         "kinds"),
    ]
    for path, body, status, field in cases:
        r = await sla.client.post(f"/api/v1/{path}", headers=admin, json=body)
        assert r.status_code == status, (path, body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert any(e["field"].endswith(field) for e in r.json()["errors"]), (field, r.json())
    r = await sla.client.post("/api/v1/calendars/cn-default/days", headers=sla.token("bob", "ops", "agent"),
                              json={"holidays": ["2027-01-01"]})
    assert r.status_code == 403
    r = await sla.client.post("/api/v1/calendars/cn-default/days", content=b"{not json",
                              headers={**admin, "content-type": "application/json"})
    assert r.status_code == 400
    agent = sla.token("bob", "ops", "agent")
    for query, status, field in (("compliance?group_by=colour", 422, "group_by"),
                                 ("compliance?period=decade", 422, "period"),
                                 ("breaches?since=2026-01-01T00:00:00", 422, "since"),
                                 ("compliance?target=speed", 422, "target"),
                                 ("clocks/no-such-request", 404, "request_id")):
        r = await sla.client.get(f"/api/v1/{query}", headers=agent)
        assert r.status_code == status, (query, r.text)
        assert any(e["field"].endswith(field) for e in r.json()["errors"]), (query, r.json())
    assert (await sla.client.get("/api/v1/at-risk", headers=sla.token("eve", "acme", "requester"))).status_code == 403
    assert await stored_events(sla) == 0
