"""Improvement actions (PDCA) on the real stack: actions proposed from a complaint's follow-up or a trend, approved
by a manager other than the proposer, implemented ten days ago and checked by the service itself once the window
after has ended. The answers in the windows before and after decide the verdict (improved for the team whose
answers rose, not improved for the one whose fell, insufficient data for too few), recorded as an event with both
figures and shown on the improvement board. Bad input names its field and stores nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from feedback_story import ALL_FOUR_GOOD, LOW, eventually

from opsat.common.commands import CommandMeta
from opsat.common.db import create_engine
from opsat.common.domain import SYSTEM_ACTOR, Actor, Role
from opsat.common.eventstore import EventStore
from opsat.feedback.domain import commands as c
from opsat.feedback.domain import tokens
from opsat.feedback.domain.templates import DEFAULT_TEMPLATE

NOW = datetime.now(UTC)
IMPLEMENTED = NOW - timedelta(days=10)  # with 7-day windows: before [-17 d, -10 d), after [-10 d, -3 d)
BEFORE, AFTER, OUTSIDE = NOW - timedelta(days=15), NOW - timedelta(days=6), NOW - timedelta(days=1)
# team -> answers (when, ratings): LOW scores 37.0, ALL_FOUR_GOOD 93.0
ANSWERS = {
    "network": [(BEFORE, LOW), (BEFORE, LOW), (AFTER, ALL_FOUR_GOOD), (AFTER, ALL_FOUR_GOOD), (OUTSIDE, LOW)],
    "desk": [(BEFORE, ALL_FOUR_GOOD), (BEFORE, ALL_FOUR_GOOD), (AFTER, LOW), (AFTER, ALL_FOUR_GOOD)],
    "storage": [(BEFORE, LOW), (BEFORE, LOW), (AFTER, ALL_FOUR_GOOD)],
}


async def answered_in_the_past(feedback) -> int:  # type: ignore[no-untyped-def]
    """Issue each team's surveys an hour before their answer and answer them at that time, as the service would
    have then; returns how many answers there are."""
    engine = create_engine(feedback.settings.database_url, pool_size=1)
    store = EventStore(engine, feedback.service.registry())
    count = 0
    try:
        for team, answers in ANSWERS.items():
            for i, (at, ratings) in enumerate(answers):
                survey_id = f"svy-{team}{i}"
                token = tokens.token_for(feedback.settings.token_key_bytes(), survey_id)
                issuing = feedback.service.command_handler(feedback.settings, store,
                                                           clock=lambda at=at: at - timedelta(hours=1))
                await issuing.execute(c.IssueSurvey(
                    survey_id=survey_id, organisation_id="acme", request_id=f"r-{survey_id}", requester_id="u-req",
                    template=DEFAULT_TEMPLATE.to_spec(), token_hash=tokens.token_hash(token), language="en",
                    recipient=None, validity=timedelta(days=7), reminder_after=timedelta(days=3), team=team,
                    assignee="agent-1", kind="incident", priority="P3", service="mail"),
                    SYSTEM_ACTOR, CommandMeta(correlation_id="test"))
                answering = feedback.service.command_handler(feedback.settings, store, clock=lambda at=at: at)
                respondent = Actor(id=f"respondent:{survey_id}", organisation="acme",
                                   roles=frozenset({Role.requester}))
                await answering.execute(c.AnswerSurvey(
                    survey_id=survey_id, token_hash=tokens.token_hash(token), template_version=1, ratings=ratings,
                    nps=8, comment="slow" if ratings is LOW else None), respondent, CommandMeta(correlation_id="test"))
                count += 1
    finally:
        await engine.dispose()
    return count


async def improvement_events(feedback) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    rows = await feedback.rows("select event_type, data from events where stream_type = 'improvement' "
                               "order by position")
    return [(t, json.loads(data)) for t, data in rows]


@pytest.mark.feedback_settings(improvement_verify_grace_s=0.0)
async def test_answers_before_and_after_the_implementation_decide_the_verdict(feedback):
    lead, boss, boss2 = (feedback.token("lead-1", "ops", "team_lead"), feedback.token("boss", "ops", "manager"),
                         feedback.token("boss2", "ops", "manager"))
    complaint = await feedback.client.post("/api/v1/complaints", headers=feedback.token("u-req", "acme"),
                                           json={"complaint": "nobody calls back", "team": "network"})
    followup_id = complaint.json()["followup_id"]
    total = await answered_in_the_past(feedback)

    # Bad input: named field, nothing stored.
    base = {"title": "Call back within a day", "plan": "a daily call-back rota", "window_days": 7,
            "min_responses": 2}
    for body, field, status in (
        ({**base, "followup_ids": [followup_id]}, "team", 422),  # no scope
        ({**base, "team": "network"}, "followup_ids", 422),  # neither follow-ups nor a trend
        ({**base, "team": "network", "followup_ids": ["fu-nothere"]}, "followup_ids.0", 422),
        ({**base, "team": "network", "trend": "falling", "window_days": 0}, "window_days", 422),
        ({**base, "team": "network", "trend": "falling", "colour": "red"}, "colour", 422),
    ):
        r = await feedback.client.post("/api/v1/improvements", json=body, headers=lead)
        assert r.status_code == status and r.headers["content-type"] == "application/problem+json", r.text
        assert field in str(r.json()["errors"]), r.text
    assert (await feedback.client.post("/api/v1/improvements", json={**base, "team": "network", "trend": "x"},
                                       headers=feedback.token("u-req", "acme"))).status_code == 403
    assert await improvement_events(feedback) == []

    ids = {}
    for team, source in (("network", {"followup_ids": [followup_id]}),
                         ("desk", {"trend": "desk CSAT fell 6 points in Q3"}),
                         ("storage", {"trend": "storage complaints up"})):
        r = await feedback.client.post("/api/v1/improvements", json={**base, "team": team, **source}, headers=boss)
        assert r.status_code == 201, r.text
        ids[team] = r.json()["improvement_id"]
    network = ids["network"]
    own = await feedback.client.post(f"/api/v1/improvements/{network}/approve", json={}, headers=boss)
    assert own.status_code == 403 and own.json()["type"] == "/problems/own-proposal", own.text
    assert (await feedback.client.post(f"/api/v1/improvements/{network}/verify", headers=boss2)).status_code == 409
    for improvement_id in ids.values():
        r = await feedback.client.post(f"/api/v1/improvements/{improvement_id}/approve", json={"note": "go"},
                                       headers=boss2)
        assert r.status_code == 200, r.text
    ahead = await feedback.client.post(f"/api/v1/improvements/{network}/implement", headers=lead, json={
        "implemented_at": (NOW + timedelta(days=1)).isoformat(), "description": "rota"})
    assert ahead.status_code == 422 and ahead.json()["errors"][0]["field"] == "implemented_at"
    before_implementing = len(await improvement_events(feedback))

    async with feedback.worker():
        async def all_answers_projected():  # type: ignore[no-untyped-def]
            r = await feedback.client.get("/api/v1/satisfaction", headers=lead)
            return r.json() and r.json()[0]["responses"] == total

        await eventually(all_answers_projected, what="every answer in the satisfaction read model")
        for improvement_id in ids.values():
            r = await feedback.client.post(f"/api/v1/improvements/{improvement_id}/implement", headers=lead, json={
                "implemented_at": IMPLEMENTED.isoformat(), "description": "rota running since"})
            assert r.status_code == 200, r.text

        async def all_checked():  # type: ignore[no-untyped-def]
            r = await feedback.client.get("/api/v1/improvements?status=verified", headers=lead)
            return r.json() if len(r.json()["items"]) == 3 else None

        await eventually(all_checked, what="the service's own check of the three actions")

    assert len(await improvement_events(feedback)) == before_implementing + 6  # implemented and verified, 3 each
    verified = {e["improvement_id"]: e for t, e in await improvement_events(feedback)
                if t == "opsat.feedback.improvement.verified"}
    assert {team: verified[i]["verdict"] for team, i in ids.items()} == {
        "network": "improved", "desk": "not_improved", "storage": "insufficient_data"}
    check = verified[network]
    assert (check["before"], check["after"]) == (
        {"responses": 2, "csat_mean": 37.0, "satisfied_percent": 0.0},
        {"responses": 2, "csat_mean": 93.0, "satisfied_percent": 100.0})  # the answer of yesterday is outside
    assert datetime.fromisoformat(check["before_from"]) == IMPLEMENTED - timedelta(days=7)
    assert datetime.fromisoformat(check["after_until"]) == IMPLEMENTED + timedelta(days=7)
    assert verified[ids["desk"]]["after"] == {"responses": 2, "csat_mean": 65.0, "satisfied_percent": 50.0}
    assert verified[ids["storage"]]["after"]["responses"] == 1

    board = (await feedback.client.get("/api/v1/improvements?team=network", headers=lead)).json()
    [row] = board["items"]
    assert (row["status"], row["verdict"], row["followup_ids"], row["approved_by"]) == (
        "verified", "improved", [followup_id], "boss2")
    assert row["before"]["csat_mean"] == 37.0 and row["after"]["csat_mean"] == 93.0
    assert [h["status"] for h in row["history"]] == ["proposed", "approved", "implemented", "verified"]
    again = await feedback.client.post(f"/api/v1/improvements/{network}/verify", headers=boss2)
    assert again.status_code == 409  # checked once per cycle

    # Act: keep what helped; a change that did not help needs a note to close, or goes back to plan.
    assert (await feedback.client.post(f"/api/v1/improvements/{network}/close", json={}, headers=boss2)
            ).status_code == 200
    no_note = await feedback.client.post(f"/api/v1/improvements/{ids['desk']}/close", json={}, headers=boss2)
    assert no_note.status_code == 422 and no_note.json()["errors"][0]["field"] == "note"
    replan = await feedback.client.post(f"/api/v1/improvements/{ids['desk']}/replan", headers=boss2,
                                        json={"reason": "the rota was ignored", "plan": "rota with a dashboard"})
    assert replan.status_code == 200, replan.text

    # The board pages through every action, newest first, without repeats.
    first = (await feedback.client.get("/api/v1/improvements?limit=2", headers=lead)).json()
    second = (await feedback.client.get(f"/api/v1/improvements?limit=2&cursor={first['next_cursor']}",
                                        headers=lead)).json()
    assert second["next_cursor"] is None
    assert sorted(i["improvement_id"] for i in first["items"] + second["items"]) == sorted(ids.values())
    bad = await feedback.client.get("/api/v1/improvements?cursor=nonsense", headers=lead)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"
