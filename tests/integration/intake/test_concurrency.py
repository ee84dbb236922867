"""Optimistic concurrency: two commands racing on one request -> one wins, nothing lost; the loser gets 412 when it
sent If-Match (its precondition failed), else 409."""

from __future__ import annotations

import asyncio

from opsat.common.testing.helpers import scalar as count_rows


async def test_two_concurrent_commands_one_succeeds_one_conflicts(intake):
    agent = intake.token("agent-1", "ops", "agent")
    other = intake.token("agent-2", "ops", "agent")
    rid = await intake.submit()
    for _ in range(5):  # a few rounds: the race must resolve the same way every time
        version = await count_rows(intake.settings.database_url,
                                   f"select max(version) from events where stream_id = '{rid}'")
        first, second = await asyncio.gather(*(
            intake.client.post(f"/api/v1/requests/{rid}/notes", json={"body": f"note by {who}"},
                               headers={**token, "If-Match": f'"{version}"'})
            for who, token in (("a1", agent), ("a2", other))))
        statuses = sorted([first.status_code, second.status_code])
        assert statuses == [200, 412], (first.text, second.text)
        loser = first if first.status_code == 412 else second
        assert loser.headers["content-type"] == "application/problem+json"
        assert loser.json()["status"] == 412
        assert await count_rows(intake.settings.database_url,
                                f"select count(*) from events where stream_id = '{rid}'") == version + 1


async def test_racing_accepts_append_exactly_one_acceptance(intake):
    agents = [intake.token(f"agent-{i}", "ops", "agent") for i in range(4)]
    rid = await intake.submit(team="desk")
    responses = await asyncio.gather(*(intake.client.post(f"/api/v1/requests/{rid}/accept", json={}, headers=h)
                                       for h in agents))
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409]
    accepted = await count_rows(intake.settings.database_url,
                                "select count(*) from events where event_type = 'opsat.intake.request.accepted'")
    assert accepted == 1
