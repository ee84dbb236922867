"""Optimistic concurrency: commands racing on one request -> one wins, nothing lost; a loser that sent
If-Match gets 412 (its precondition failed); one that did not is decided again on the winner's state, and
answered by the domain (here 409: the request is accepted already).

Run one after another, the later commands would be refused by the checks before the write (If-Match, the
domain's transition rules). The barrier holds every append at the insert until all of them have passed
those checks, so only `unique (stream_id, version)` can tell them apart: the losers must get its
`version_conflict` code.
"""

from __future__ import annotations

import pytest
from db_barrier import append_barrier

from opsat.common.testing.helpers import scalar as count_rows


def code(r) -> str:
    """The problem's code, from its type ("/problems/version-conflict")."""
    return r.json()["type"].rsplit("/", 1)[-1].replace("-", "_")


@pytest.mark.intake_settings(event_store_group_commit=False)  # racing sessions, as of separate API processes
async def test_two_concurrent_commands_one_succeeds_one_conflicts(intake):
    agent = intake.token("agent-1", "ops", "agent")
    other = intake.token("agent-2", "ops", "agent")
    db = intake.settings.database_url
    rid = await intake.submit()
    for _ in range(3):  # a few rounds: the race must resolve the same way every time
        version = await count_rows(db, f"select max(version) from events where stream_id = '{rid}'")
        async with append_barrier(db) as barrier:
            first, second = await barrier.race([
                intake.client.post(f"/api/v1/requests/{rid}/notes", json={"body": f"note by {who}"},
                                   headers={**token, "If-Match": f'"{version}"'})
                for who, token in (("a1", agent), ("a2", other))])
        statuses = sorted([first.status_code, second.status_code])
        assert statuses == [200, 412], (first.text, second.text)
        loser = first if first.status_code == 412 else second
        assert loser.headers["content-type"] == "application/problem+json"
        assert loser.json()["status"] == 412
        assert code(loser) == "version_conflict", loser.text
        assert await count_rows(db, f"select count(*) from events where stream_id = '{rid}'") == version + 1


@pytest.mark.intake_settings(event_store_group_commit=False)  # racing sessions, as of separate API processes
async def test_racing_accepts_append_exactly_one_acceptance(intake):
    agents = [intake.token(f"agent-{i}", "ops", "agent") for i in range(4)]
    db = intake.settings.database_url
    rid = await intake.submit(team="desk")
    async with append_barrier(db) as barrier:
        responses = await barrier.race([intake.client.post(f"/api/v1/requests/{rid}/accept", json={}, headers=h)
                                        for h in agents])
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409], [r.text for r in responses]
    # the losers named no version: decided again after the winner's append, the domain refuses a second accept
    assert sorted(code(r) for r in responses if r.status_code == 409) == ["invalid_transition"] * 3
    accepted = await count_rows(db, "select count(*) from events where event_type = 'opsat.intake.request.accepted'")
    assert accepted == 1
