"""Over HTTP with the real store and broker: requirement changes (segregation of duties, the requester's
confirmation, resolve while a change is pending), contradictory links and nested policy overrides."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from opsat.common.testing.helpers import scalar

PROBLEM_JSON = "application/problem+json"


async def events(intake) -> int:
    return await scalar(intake.settings.database_url, "select count(*) from events")


async def post(intake, who: dict[str, str], rid: str, path: str, body: Any = None):
    return await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=who)


async def ok(intake, who, rid, path, body=None) -> int:
    r = await post(intake, who, rid, path, body)
    assert r.status_code == 200, (path, r.text)
    return r.json()["version"]


async def refused(intake, who, rid, path, body, status: int, code: str) -> dict:
    before = await events(intake)
    r = await post(intake, who, rid, path, body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    assert r.json()["type"] == f"/problems/{code}", r.json()
    assert await events(intake) == before
    return r.json()


def actors(intake) -> tuple[dict[str, str], ...]:
    return (intake.token("u-req", "acme", "requester"), intake.token("agent-1", "ops", "agent"),
            intake.token("mgr-1", "ops", "manager"), intake.token("mgr-2", "ops", "manager"))


async def with_confirmed_requirement(intake) -> str:
    requester, agent, _, _ = actors(intake)
    rid = await intake.submit(requester, kind="service_request", team="desk")
    await ok(intake, agent, rid, "accept", {})
    await ok(intake, agent, rid, "requirement", {"scope": "a laptop", "acceptance_criteria": "it boots"})
    await ok(intake, requester, rid, "requirement/confirm")
    await ok(intake, agent, rid, "start")
    return rid


async def test_a_staff_proposed_change_needs_another_approver_and_the_requesters_confirmation(intake):
    requester, agent, manager, other_manager = actors(intake)
    rid = await with_confirmed_requirement(intake)
    change = {"change_id": "dock", "scope": "a laptop and a dock", "acceptance_criteria": "both work",
              "reason": "the desk has no ports"}
    await ok(intake, manager, rid, "requirement/changes", change)
    await ok(intake, agent, rid, "requirement/changes/assess",
             {"change_id": "dock", "effort_hours": 1, "impact_summary": "one more item"})
    await refused(intake, manager, rid, "requirement/changes/approve", {"change_id": "dock"}, 403, "forbidden")
    await refused(intake, agent, rid, "resolve", {"solution": "delivered"}, 409, "requirement-change-pending")
    await ok(intake, other_manager, rid, "requirement/changes/approve", {"change_id": "dock"})
    body = await refused(intake, agent, rid, "resolve", {"solution": "delivered"}, 409, "requirement-not-confirmed")
    assert "version 2" in body["detail"]
    async with intake.worker():
        view = await intake.wait_for(rid, 8, requester)
        assert {k: view["requirement"][k] for k in ("version", "confirmed", "scope")} == {
            "version": 2, "confirmed": False, "scope": "a laptop and a dock"}
        version = await ok(intake, requester, rid, "requirement/confirm")
        view = await intake.wait_for(rid, version, requester)
        assert (view["requirement"]["version"], view["requirement"]["confirmed"]) == (2, True)
        timeline = (await intake.client.get(f"/api/v1/requests/{rid}/timeline", headers=requester)).json()
    approved = next(e for e in timeline if e["event_type"].endswith("requirement_change_approved.v1"))
    assert approved["data"]["requires_confirmation"] is True and approved["data"]["proposed_by"] == "mgr-1"
    await ok(intake, agent, rid, "resolve", {"solution": "delivered"})


async def test_contradictory_links_are_refused(intake):
    _, agent, _, _ = actors(intake)
    rid, target = await intake.submit(), await intake.submit()
    await ok(intake, agent, rid, "links", {"target_id": target, "link_type": "parent_of"})
    for link_type in ("child_of", "duplicate_of"):
        body = await refused(intake, agent, rid, "links", {"target_id": target, "link_type": link_type}, 409,
                             "contradictory-link")
        assert "parent_of" in body["detail"]
    await ok(intake, agent, rid, "links", {"target_id": target, "link_type": "caused_by"})


# Every day from yesterday to three weeks ahead is a holiday in the default calendar.
HOLIDAYS = [(date.today() + timedelta(days=d)).isoformat() for d in range(-1, 22)]


@pytest.mark.intake_settings(
    intake_policy={"calendar": {"holidays": HOLIDAYS}, "auto_close_business_days": 1},
    intake_policy_by_org={"acme": {"calendar": {"time_zone": "Europe/Berlin"}}},
)
async def test_an_organisations_calendar_override_keeps_the_defaults_holidays(intake):
    _, agent, _, _ = actors(intake)
    rid = await intake.submit(team="desk")  # an acme request
    for path, body in (("accept", {}), ("start", None), ("resolve", {"solution": "patched"})):
        await ok(intake, agent, rid, path, body)
    due = await scalar(intake.settings.database_url, "select (data->>'auto_close_due_at')::timestamptz - recorded_at "
                       "from events where stream_id = $1 and event_type like '%.resolved%'", rid)
    assert due > timedelta(days=19)  # counted after the holidays, not on the next weekday
