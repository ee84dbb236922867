"""Unanswered deliveries close by themselves: RequestResolved -> deadline -> AutoCloseRequest -> RequestClosed."""

from __future__ import annotations

import asyncio

import pytest

from opsat.common.testing.helpers import scalar


# Zero business days on a 24x7 calendar: the deadline is due as soon as it is scheduled.
@pytest.mark.intake_settings(intake_policy={"auto_close_business_days": 0, "calendar": {"always_open": True}})
async def test_resolved_request_auto_closes_when_its_deadline_is_due(intake):
    agent = intake.token("agent-1", "ops", "agent")
    rid = await intake.submit(team="desk")
    for path, body in (("accept", {}), ("start", None), ("resolve", {"solution": "patched"})):
        r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=agent)
        assert r.status_code == 200, r.text
    async with intake.worker():
        view = await intake.wait_for(rid, 5, timeout=30)
    assert view["status"] == "closed"
    timeline = (await intake.client.get(f"/api/v1/requests/{rid}/timeline", headers=agent)).json()
    assert timeline[-1]["data"]["reason"] == "auto_closed" and timeline[-1]["actor"] == "system"
    await asyncio.sleep(0)
    assert await scalar(intake.settings.database_url, "select count(*) from deadlines") == 0
