"""The team queue and the backlog statistics, read from the working set `open_requests`.

The projection keeps `open_requests` equal to the open rows of `requests` (checked column by column after
every step below); the queue lists a team's open requests most urgent first, oldest first within a
priority, and follows assignment, priority overrides, resolution and reopening; the backlog counts open
requests by status × priority and by age, with the list's filters. Migration 0006 fills the working set
of a store that already has requests.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from alembic import command

from opsat.common.db import create_engine
from opsat.common.domain import Actor, Role
from opsat.common.migrations import alembic_config, upgrade
from opsat.common.testing.helpers import rows
from opsat.intake.projections.queries import IntakeQueries, RequestFilters

AGENT = ("agent-1", "ops", "agent")
LEAD = ("lead-1", "ops", "team_lead")
ALICE = ("alice", "acme", "requester")
CAROL = ("carol", "globex", "requester")
OPEN = ("submitted", "accepted", "in_progress", "awaiting_customer", "reopened")
COLUMNS = "id, organisation_id, requester_id, kind, service, priority, status, team, assignee, submitted_at"


async def _ok(intake, who: tuple[str, str, str], rid: str, path: str, body: Any = None) -> int:
    r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=intake.token(*who))
    assert r.status_code == 200, (path, r.text)
    return r.json()["version"]


async def _get(intake, who: tuple[str, str, str], url: str, **params: Any) -> Any:
    r = await intake.client.get(url, params=params, headers=intake.token(*who))
    assert r.status_code == 200, r.text
    return r.json()


async def _working_set_matches(intake) -> set[str]:
    """`open_requests` equals the open rows of `requests`; returns their ids."""
    url = intake.settings.database_url
    working = {tuple(r) for r in await rows(url, f"select {COLUMNS} from read_model.open_requests")}
    expected = {tuple(r) for r in await rows(
        url, f"select {COLUMNS} from read_model.requests where status = any($1::text[])", list(OPEN))}
    assert working == expected
    return {r[0] for r in working}


async def _queue(intake, team: str) -> list[str]:
    return [item["id"] for item in await _get(intake, LEAD, f"/api/v1/queues/{team}")]


def _expected_queue(requests: list[dict[str, Any]], team: str) -> list[str]:
    mine = [r for r in requests if r["team"] == team and r["status"] in OPEN]
    return [r["id"] for r in sorted(mine, key=lambda r: (r["priority"], r["submitted_at"], r["id"]))]


async def test_the_queue_and_the_backlog_follow_the_life_of_requests(intake):
    async with intake.worker():
        # impact x urgency gives different priorities; two of the same priority are ordered by age
        ids = []
        for who, impact, urgency in ((ALICE, 3, 3), (ALICE, 1, 1), (CAROL, 2, 2), (ALICE, 2, 2), (CAROL, 3, 2)):
            ids.append(await intake.submit(intake.token(*who), impact=impact, urgency=urgency))
        versions = {rid: 1 for rid in ids}
        for rid in ids[:4]:
            versions[rid] = await _ok(intake, AGENT, rid, "accept", {"team": "network", "assignee": "agent-1"})

        async def settled() -> list[dict[str, Any]]:
            return [await intake.wait_for(rid, v) for rid, v in versions.items()]

        current = await settled()
        assert len({r["priority"] for r in current}) >= 3, [r["priority"] for r in current]
        assert await _working_set_matches(intake) == set(ids)
        assert await _queue(intake, "network") == _expected_queue(current, "network")
        assert ids[4] not in await _queue(intake, "network")  # not accepted: no team yet

        backlog = await _get(intake, LEAD, "/api/v1/stats/backlog")
        assert backlog["total"] == 5 and backlog["ageing"]["0-1d"] == 5
        matrix: dict[str, dict[str, int]] = {}
        for r in current:
            matrix.setdefault(r["status"], {}).setdefault(r["priority"], 0)
            matrix[r["status"]][r["priority"]] += 1
        assert backlog["by_status_priority"] == matrix
        assert (await _get(intake, LEAD, "/api/v1/stats/backlog", team="network"))["total"] == 4
        assert (await _get(intake, ALICE, "/api/v1/stats/backlog"))["total"] == 3  # acme's own only
        assert (await _get(intake, LEAD, "/api/v1/stats/backlog", organisation="globex"))["total"] == 2
        assert (await _get(intake, LEAD, "/api/v1/stats/backlog", kind="change"))["total"] == 0

        # the least urgent jumps ahead by an override; one moves to another team; one is resolved, then
        # its delivery is rejected (reopened: open again)
        versions[ids[0]] = await _ok(intake, LEAD, ids[0], "priority", {"priority": "P1", "reason": "board meeting"})
        versions[ids[2]] = await _ok(intake, LEAD, ids[2], "assign",
                                     {"team": "desk", "assignee": "agent-2", "reason": "wrong queue"})
        await _ok(intake, AGENT, ids[3], "start")
        versions[ids[3]] = await _ok(intake, AGENT, ids[3], "resolve", {"solution": "restarted"})
        current = await settled()
        assert await _working_set_matches(intake) == set(ids) - {ids[3]}
        network = await _queue(intake, "network")
        assert network == _expected_queue(current, "network") and network[0] == ids[0]
        assert await _queue(intake, "desk") == [ids[2]]
        backlog = await _get(intake, LEAD, "/api/v1/stats/backlog")
        assert backlog["total"] == 4 and "resolved" not in backlog["by_status_priority"]
        assert (await _get(intake, LEAD, "/api/v1/stats/backlog", team="network"))["total"] == 2

        versions[ids[3]] = await _ok(intake, ALICE, ids[3], "reject-delivery", {"reason": "still broken"})
        current = await settled()
        assert await _working_set_matches(intake) == set(ids)
        assert await _queue(intake, "network") == _expected_queue(current, "network")
        backlog = await _get(intake, LEAD, "/api/v1/stats/backlog")
        assert backlog["total"] == 5 and backlog["by_status_priority"]["reopened"] == {current[3]["priority"]: 1}

        # ageing, asked as of later instants: each bound is "younger than", so exactly 1 day old is 1-3d
        engine = create_engine(intake.settings.database_url, pool_size=1)
        try:
            queries = IntakeQueries(engine)
            staff = Actor(id="lead-1", organisation="ops", roles=frozenset({Role.team_lead}))
            newest = max(datetime.fromisoformat(r["submitted_at"]) for r in current)
            oldest = min(datetime.fromisoformat(r["submitted_at"]) for r in current)
            for later, bucket in ((timedelta(days=2), "1-3d"), (timedelta(days=6), "3-7d"),
                                  (timedelta(days=29), "7-30d"), (timedelta(days=30), ">30d")):
                ageing = (await queries.backlog(staff, RequestFilters(), newest + later))["ageing"]
                assert ageing == {**dict.fromkeys(ageing, 0), bucket: 5}, (later, ageing)
            split = await queries.backlog(staff, RequestFilters(), oldest + timedelta(days=1))
            assert split["ageing"]["0-1d"] + split["ageing"]["1-3d"] == 5 and split["ageing"]["1-3d"] >= 1
        finally:
            await engine.dispose()


async def test_migration_0006_fills_the_working_set_of_an_existing_store(intake):
    async with intake.worker():
        ids = [await intake.submit(intake.token(*ALICE)) for _ in range(3)]
        await _ok(intake, AGENT, ids[0], "accept", {"team": "network", "assignee": "agent-1"})
        await _ok(intake, AGENT, ids[0], "start")
        await _ok(intake, AGENT, ids[0], "resolve", {"solution": "done"})
        await intake.wait_for(ids[0], 4)
        for rid in ids[1:]:
            await intake.wait_for(rid, 1)
    url, versions = intake.settings.database_url, intake.service.migrations
    await asyncio.to_thread(command.downgrade, alembic_config(url, versions), "0005")
    assert await rows(url, "select to_regclass('read_model.open_requests') as t") == [(None,)]
    await asyncio.to_thread(upgrade, url, versions)
    assert await _working_set_matches(intake) == set(ids[1:])
