"""Stalled requests and the workload board on the real stack: intake's API -> intake's topic -> the SLA
monitor's clocks, stall timers (deadlines table) and read model -> `opsat.sla.events` and the queries."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from opsat.common.testing.helpers import rows
from opsat.common.testing.infra import consume_all
from opsat.sla_monitor.service import SERVICE as SLA
from tests.integration.sla_monitor.clock_helpers import clock, define_policy, eventually, pending_deadlines


async def stall_events(sla, rid: str) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    found = await rows(sla.settings.database_url, "select event_type, data::text from events where stream_id = $1"
                       " and event_type like 'opsat.sla.clock.stall%' order by version", rid)
    return [(r["event_type"].removeprefix("opsat.sla.clock."), json.loads(r["data"])) for r in found]


async def stalled_list(sla, **params: str) -> list[dict]:  # type: ignore[no-untyped-def]
    r = await sla.client.get("/api/v1/stalled", params=params, headers=sla.token("bob", "ops", "agent"))
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_quiet_request_is_flagged_once_per_quiet_spell_and_activity_clears_it(intake, run_service,
                                                                                      kafka_bootstrap):
    sla = await run_service(SLA)
    await define_policy(sla, "it-quiet", stall_after_seconds=2)
    agent = intake.token("agent-1", "ops", "agent")
    async with intake.worker(only=("relay",)), sla.worker():
        rid = await intake.submit()
        r = await intake.client.post(f"/api/v1/requests/{rid}/accept", json={"team": "network", "assignee": "alice"},
                                     headers=agent)
        assert r.status_code == 200, r.text
        accepted = await rows(intake.settings.database_url, "select data::text from events where stream_id = $1 and"
                              " event_type = 'opsat.intake.request.accepted'", rid)
        accepted_at = datetime.fromisoformat(json.loads(accepted[0]["data"])["at"])
        # The quiet spell after the last activity (the accept) ran out 2 s of (24x7) business time later.
        listed = await eventually(lambda: _listed(sla, rid, since=accepted_at))
        assert listed["team"] == "network" and listed["assignee"] == "alice" and listed["priority"] == "P2"
        flag = next(e for name, e in await stall_events(sla, rid)
                    if name == "stalled" and datetime.fromisoformat(e["quiet_since"]) == accepted_at)
        assert flag["quiet_seconds"] == 2 and flag["team"] == "network"
        assert datetime.fromisoformat(flag["at"]) == accepted_at + timedelta(seconds=2)

        # The flag retired the stall timer: nothing is left to fire a second flag for this spell.
        await eventually(lambda: _equals(pending_deadlines(sla, "sla_stall", rid), 0))
        before_note = await stall_events(sla, rid)
        assert_once_per_spell(before_note)
        assert before_note[-1][0] == "stalled"

        r = await intake.client.post(f"/api/v1/requests/{rid}/notes", json={"body": "looking"}, headers=agent)
        assert r.status_code == 200, r.text
        cleared = await eventually(lambda: _cleared_after(sla, rid, len(before_note)))
        assert cleared[1]["activity"] == "opsat.intake.request.internal_note_added"
        # A new quiet spell after the note: flagged again, once.
        await eventually(lambda: _listed(sla, rid, since=datetime.fromisoformat(cleared[1]["at"])))
        events = await stall_events(sla, rid)
        assert_once_per_spell(events)
        assert events[len(before_note) + 1][0] == "stalled"

        # Awaiting the customer is no stall: the flag clears and no new one comes while the clock is paused.
        r = await intake.client.post(f"/api/v1/requests/{rid}/start", headers=agent)
        assert r.status_code == 200, r.text
        r = await intake.client.post(f"/api/v1/requests/{rid}/request-info", json={"question": "which?"},
                                     headers=agent)
        assert r.status_code == 200, r.text
        await eventually(lambda: _not_listed(sla, rid))
        await eventually(lambda: _equals(pending_deadlines(sla, "sla_stall", rid), 0))  # paused: no stall timer
        settled = len(await stall_events(sla, rid))
        await asyncio.sleep(0.5)  # a few timer polls (0.2 s)
        assert len(await stall_events(sla, rid)) == settled
        state = await clock(sla, rid)
        assert state["stalled"] is False and state["stall_after_seconds"] == 2
        summaries = [e["summary"] for e in state["explanation"]]
        assert any(s.startswith("stalled: no activity since") for s in summaries)
        assert "stall cleared by internal_note_added" in summaries

    topic = sla.settings.topic("sla")
    stored = await stall_events(sla, rid)
    records = [json.loads(r.value) for r in await consume_all(kafka_bootstrap, topic, min_count=settled + 2)]
    published = [(r["type"].removeprefix("opsat.sla.clock.").removesuffix(".v1"), r["data"]) for r in records
                 if r["subject"] == rid and r["type"].startswith("opsat.sla.clock.stal")]
    assert published == stored and len(stored) >= 4
    assert await pending_deadlines(sla, "sla_stall", rid) == 0  # paused: no stall timer until work resumes


def assert_once_per_spell(events: list[tuple[str, dict]]) -> None:
    """Flags and clearances alternate, a flag first, and no quiet spell is flagged twice."""
    assert [name for name, _ in events] == [("stalled", "stall_cleared")[i % 2] for i in range(len(events))], events
    spells = [e["quiet_since"] for name, e in events if name == "stalled"]
    assert len(spells) == len(set(spells))


async def _listed(sla, rid: str, since: datetime) -> dict | None:  # type: ignore[no-untyped-def]
    return next((s for s in await stalled_list(sla, team="network")
                 if s["request_id"] == rid and datetime.fromisoformat(s["quiet_since"]) == since), None)


async def _cleared_after(sla, rid: str, count: int) -> tuple[str, dict] | None:  # type: ignore[no-untyped-def]
    events = await stall_events(sla, rid)
    return events[count] if len(events) > count else None


async def _equals(count, expected: int) -> bool:  # type: ignore[no-untyped-def]
    return await count == expected


async def _not_listed(sla, rid: str) -> bool:  # type: ignore[no-untyped-def]
    return all(s["request_id"] != rid for s in await stalled_list(sla))


async def test_the_workload_board_sets_open_requests_and_logged_hours_against_business_hours(intake, run_service):
    sla = await run_service(SLA)
    await define_policy(sla, "it-board")
    alice, bob = intake.token("alice", "ops", "agent"), intake.token("bob", "ops", "agent")
    today = datetime.now(UTC).date()
    async with intake.worker(only=("relay",)), sla.worker():
        p2 = await intake.submit()  # impact 2, urgency 1: P2
        p1 = await intake.submit(impact=1, urgency=1)
        done = await intake.submit()
        for rid in (p2, p1, done):
            r = await intake.client.post(f"/api/v1/requests/{rid}/accept", json={"team": "network", "assignee": "alice"},
                                         headers=alice)
            assert r.status_code == 200, r.text
        for who, rid, minutes in ((alice, p2, 90), (alice, p1, 30), (bob, p1, 45)):
            r = await intake.client.post(f"/api/v1/requests/{rid}/time-entries", headers=who,
                                         json={"minutes": minutes, "work_date": today.isoformat()})
            assert r.status_code == 200, r.text
        r = await intake.client.post(f"/api/v1/requests/{done}/start", headers=alice)
        assert r.status_code == 200, r.text
        r = await intake.client.post(f"/api/v1/requests/{done}/resolve", json={"solution": "fixed"}, headers=alice)
        assert r.status_code == 200, r.text
        query = {"team": "network", "since": today.isoformat(), "until": (today + timedelta(days=1)).isoformat(),
                 "calendar_id": "24x7"}

        async def board() -> dict | None:
            r = await sla.client.get("/api/v1/workload", params=query, headers=sla.token("lead", "ops", "team_lead"))
            assert r.status_code == 200, r.text
            body = r.json()
            engineers = {e["engineer"]: e for e in body["engineers"]}
            # Settled: the resolved request has left and the P1 has arrived (two open requests can be a transient).
            ready = (engineers.get("alice", {}).get("open_requests") == 2 and "bob" in engineers
                     and engineers["alice"]["weighted_load"] == 4 + 3 and engineers["alice"]["logged_hours"] == 2.0)
            return body if ready else None

        body = await eventually(board)
    assert body["available_hours_per_engineer"] == 24.0 and body["calendar"] == {"calendar_id": "24x7", "version": 1}
    engineers = {e["engineer"]: e for e in body["engineers"]}
    a, b = engineers["alice"], engineers["bob"]
    assert (a["team"], a["open_requests"], a["weighted_load"], a["overdue"]) == ("network", 2, 4 + 3, 0)
    assert 0 < a["remaining_business_seconds"] <= 72000 + 4 * 3600  # P2 20 h (it-board) + P1 4 h, less time spent
    assert (a["logged_hours"], a["available_hours"], a["utilisation_percent"]) == (2.0, 24.0, round(200 / 24, 1))
    assert (b["team"], b["open_requests"], b["logged_hours"]) == ("network", 0, 0.75)
    [team] = body["teams"]
    assert (team["team"], team["engineers"], team["open_requests"], team["logged_hours"], team["available_hours"]) == \
        ("network", 2, 2, 2.75, 48.0)
    only_bob = await sla.client.get("/api/v1/workload", params={**query, "engineer": "bob"},
                                    headers=sla.token("lead", "ops", "team_lead"))
    assert [e["engineer"] for e in only_bob.json()["engineers"]] == ["bob"]


async def test_bad_stall_and_workload_input_is_a_problem_naming_the_field_and_nothing_is_stored(run_service):
    sla = await run_service(SLA)
    admin, lead = sla.token("root", "ops", "admin"), sla.token("lead", "ops", "team_lead")
    for name, value in (("stall_after_seconds", 0), ("stall_after_seconds", -1), ("stall_after_seconds", "soon"),
                        ("next_reply_seconds", 0), ("ola_seconds", -5), ("ola_teams", {"network": 0}),
                        ("ola_teams", ["network"])):
        r = await sla.client.post("/api/v1/policies/gold/define", headers=admin, json={
            "first_response_seconds": 60, "resolution_seconds": 600, name: value})
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        assert any(name in e["field"] for e in r.json()["errors"]), r.json()
    for query, status, field in (("workload?since=2026-03-10&until=2026-03-01", 422, "since"),
                                 ("workload?since=2020-01-01&until=2026-03-01", 422, "until"),
                                 ("workload?since=yesterday", 422, "since"),
                                 ("workload?calendar_id=nowhere", 404, "calendar_id"),
                                 ("stalled?priority=P9", 422, "priority"),
                                 ("stalled?limit=0", 422, "limit")):
        r = await sla.client.get(f"/api/v1/{query}", headers=lead)
        assert r.status_code == status, (query, r.text)
        assert any(e["field"].endswith(field) for e in r.json()["errors"]), (query, r.json())
    assert (await sla.client.get("/api/v1/workload", headers=sla.token("eve", "acme", "requester"))).status_code == 403
    assert (await rows(sla.settings.database_url, "select count(*) from events"))[0][0] == 0


async def test_first_contact_resolution_counts_requests_never_moved_reopened_or_waiting(intake, run_service):
    sla = await run_service(SLA)
    await define_policy(sla, "it-fcr")
    agent, requester = intake.token("alice", "ops", "agent"), intake.token()

    async def post(rid: str, path: str, body: dict | None = None, headers: dict | None = None) -> None:
        r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=headers or agent)
        assert r.status_code == 200, (path, r.text)

    async with intake.worker(only=("relay",)), sla.worker():
        plain, moved, waited, reopened, open_ = [await intake.submit() for _ in range(5)]
        for rid in (plain, moved, waited, reopened, open_):
            await post(rid, "accept", {"team": "network", "assignee": "alice"})
            await post(rid, "start")
        await post(moved, "assign", {"team": "database", "assignee": "dora", "reason": "a database fault"})
        await post(waited, "request-info", {"question": "which host?"})
        await post(waited, "provide-info", {"answer": "db-1"}, requester)
        for rid in (plain, moved, waited, reopened):
            await post(rid, "resolve", {"solution": "fixed"})
        await post(reopened, "reject-delivery", {"reason": "still broken"}, requester)
        await post(reopened, "start")
        await post(reopened, "resolve", {"solution": "fixed again"})

        async def resolved_twice() -> bool:
            met = await rows(sla.settings.database_url, "select data::text from events where stream_id = $1 and"
                             " event_type = 'opsat.sla.clock.resolution_met' order by version", reopened)
            if len(met) < 2:
                return False
            again = datetime.fromisoformat(json.loads(met[1]["data"])["at"])
            row = await rows(sla.settings.database_url, "select met_at from read_model.sla_targets where"
                             " request_id = $1 and target = 'resolution'", reopened)
            return bool(row) and row[0]["met_at"] == again

        await eventually(resolved_twice)  # the figures below must not catch the reopened request in between

        async def figures() -> list[dict] | None:
            r = await sla.client.get("/api/v1/metrics/first-contact-resolution?group_by=priority&period=day",
                                     headers=sla.token("lead", "ops", "team_lead"))
            assert r.status_code == 200, r.text
            body = r.json()
            ready = len(body) == 1 and body[0]["resolved"] == 4 and body[0]["reopened"] == 1
            return body if ready else None

        [row] = await eventually(figures)
    assert (row["priority"], row["resolved"], row["first_contact"], row["fcr_percent"]) == ("P2", 4, 1, 25.0)
    assert (row["reassigned"], row["reopened"], row["waited_on_customer"]) == (1, 1, 1)
    by_team = (await sla.client.get("/api/v1/metrics/first-contact-resolution?group_by=team",
                                    headers=sla.token("lead", "ops", "team_lead"))).json()
    assert {r["team"]: (r["resolved"], r["first_contact"]) for r in by_team} == {"database": (1, 0), "network": (3, 1)}
    bad = await sla.client.get("/api/v1/metrics/first-contact-resolution?group_by=colour",
                               headers=sla.token("lead", "ops", "team_lead"))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "group_by"


async def test_a_missed_periodic_update_is_announced_once_and_a_staff_reply_gives_the_next(intake, run_service):
    sla = await run_service(SLA)
    await define_policy(sla, "it-updates", next_reply_seconds=2)
    agent = intake.token("alice", "ops", "agent")

    async def kinds(rid: str) -> list[str]:
        found = await rows(sla.settings.database_url, "select event_type from events where stream_id = $1 and"
                           " event_type like 'opsat.sla.clock.update%' order by version", rid)
        return [r["event_type"].removeprefix("opsat.sla.clock.") for r in found]

    async with intake.worker(only=("relay",)), sla.worker():
        rid = await intake.submit()
        r = await intake.client.post(f"/api/v1/requests/{rid}/accept", json={"team": "network"}, headers=agent)
        assert r.status_code == 200, r.text
        await eventually(lambda: _has(kinds, rid, ["update_overdue"]))
        await asyncio.sleep(1.0)  # the timer keeps firing for the breach marks: the gap is announced once
        assert await kinds(rid) == ["update_overdue"]
        r = await intake.client.post(f"/api/v1/requests/{rid}/replies", json={"body": "still on it"}, headers=agent)
        assert r.status_code == 200, r.text
        await eventually(lambda: _has(kinds, rid, ["update_overdue", "update_given", "update_overdue"]))
        state = await clock(sla, rid)
    assert state["next_reply"]["target_seconds"] == 2 and state["next_reply"]["overdue"] is True
    summaries = [e["summary"] for e in state["explanation"]]
    assert sum(s.startswith("update overdue: none since") for s in summaries) == 2
    assert sum(s.startswith("update given, next due at") for s in summaries) == 1


async def _has(kinds, rid: str, expected: list[str]) -> bool:  # type: ignore[no-untyped-def]
    return await kinds(rid) == expected


async def test_each_team_holding_a_request_gets_its_ola_breach_once(intake, run_service):
    sla = await run_service(SLA)
    await define_policy(sla, "it-ola", ola_seconds=2, ola_teams={"database": 3})
    agent = intake.token("alice", "ops", "agent")

    async def breaches(rid: str) -> list[dict]:
        found = await rows(sla.settings.database_url, "select data::text from events where stream_id = $1 and"
                           " event_type = 'opsat.sla.clock.ola_breached' order by version", rid)
        return [json.loads(r["data"]) for r in found]

    async def count(rid: str, n: int) -> list[dict] | None:
        found = await breaches(rid)
        return found if len(found) == n else None

    async with intake.worker(only=("relay",)), sla.worker():
        rid = await intake.submit()
        r = await intake.client.post(f"/api/v1/requests/{rid}/accept", json={"team": "network"}, headers=agent)
        assert r.status_code == 200, r.text
        [network] = await eventually(lambda: count(rid, 1))
        await asyncio.sleep(1.0)
        assert len(await breaches(rid)) == 1  # once per holding
        r = await intake.client.post(f"/api/v1/requests/{rid}/assign", json={"team": "database", "reason": "db"},
                                     headers=agent)
        assert r.status_code == 200, r.text
        _, database = await eventually(lambda: count(rid, 2))
        state = await clock(sla, rid)
    assert (network["team"], network["target_seconds"]) == ("network", 2)
    assert (database["team"], database["target_seconds"]) == ("database", 3)
    assert datetime.fromisoformat(database["at"]) - datetime.fromisoformat(database["held_since"]) == \
        timedelta(seconds=3)
    assert state["ola"]["team"] == "database" and state["ola"]["breached"] is True


async def test_a_manager_retargets_a_running_clock_with_a_reason_kept_in_the_explanation(intake, run_service):
    sla = await run_service(SLA)
    await define_policy(sla, "it-slow")
    await define_policy(sla, "vip", priorities=["P1"], first_response_seconds=600, resolution_seconds=3600)
    manager, agent = sla.token("carol", "ops", "manager"), sla.token("bob", "ops", "agent")
    async with intake.worker(only=("relay",)), sla.worker():
        rid = await intake.submit()
        started = await eventually(lambda: clock(sla, rid))
        stored = len(await rows(sla.settings.database_url, "select 1 from events where stream_id = $1", rid))
        for body, headers, status, field in (
                ({"policy_id": "nowhere", "reason": "why"}, manager, 404, "policy_id"),
                ({"policy_id": "vip"}, manager, 422, "reason"),
                ({"policy_id": "vip", "reason": "   "}, manager, 422, "reason"),
                ({"policy_id": "Bad Id", "reason": "why"}, manager, 422, "policy_id"),
                ({"policy_id": "vip", "reason": "why"}, agent, 403, None)):
            r = await sla.client.post(f"/api/v1/clocks/{rid}/retarget", json=body, headers=headers)
            assert r.status_code == status, (body, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            if field:
                assert any(e["field"].endswith(field) for e in r.json()["errors"]), r.json()
        assert len(await rows(sla.settings.database_url, "select 1 from events where stream_id = $1", rid)) == stored
        r = await sla.client.post(f"/api/v1/clocks/{rid}/retarget", json={"policy_id": "vip", "reason": "CEO's laptop"},
                                  headers={**manager, "Idempotency-Key": "retarget-1"})
        assert r.status_code == 200, r.text
        again = await sla.client.post(f"/api/v1/clocks/{rid}/retarget",
                                      json={"policy_id": "vip", "reason": "CEO's laptop"},
                                      headers={**manager, "Idempotency-Key": "retarget-1"})
        assert again.status_code == 200 and again.json()["replayed"] is True
    retargeted = await clock(sla, rid)
    assert retargeted["policy"] == {"policy_id": "vip", "version": 1} and retargeted["priority"] == "P2"
    assert retargeted["targets"]["resolution"]["target_seconds"] == 3600
    assert datetime.fromisoformat(retargeted["targets"]["resolution"]["due_at"]) == \
        datetime.fromisoformat(started["started_at"]) + timedelta(hours=1)
    [change] = [e for e in retargeted["explanation"] if e["type"] == "opsat.sla.clock.retargeted"]
    assert change["summary"] == "re-targeted under policy vip v1 by carol: CEO's laptop"


async def test_what_if_replays_a_periods_clocks_under_a_draft_without_storing_anything(intake, run_service):
    sla = await run_service(SLA)
    await define_policy(sla, "it-what-if")
    agent, lead = intake.token("alice", "ops", "agent"), sla.token("lead", "ops", "team_lead")
    since = datetime.now(UTC) - timedelta(minutes=1)
    async with intake.worker(only=("relay",)), sla.worker():
        rid = await intake.submit()
        for path, body in (("accept", {"team": "network"}), ("start", None), ("resolve", {"solution": "fixed"})):
            await asyncio.sleep(1.1)  # each step past the draft's 1 s targets (24x7), however fast the machine
            r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=agent)
            assert r.status_code == 200, r.text

        async def resolved() -> bool:
            found = await rows(sla.settings.database_url, "select 1 from read_model.sla_targets where request_id = $1"
                               " and target = 'resolution' and status = 'met'", rid)
            return bool(found)

        await eventually(resolved)
    stored = (await rows(sla.settings.database_url, "select count(*) from events"))[0][0]
    until = datetime.now(UTC) + timedelta(minutes=1)
    draft = {"priorities": ["P2"], "calendar_id": "24x7", "first_response_seconds": 1, "resolution_seconds": 1}
    r = await sla.client.post("/api/v1/what-if", headers=lead, json={
        "since": since.isoformat(), "until": until.isoformat(), "policy": draft})
    assert r.status_code == 200, r.text
    body = r.json()
    [request] = body["requests"]
    assert request["request_id"] == rid and request["changed"] is True
    assert request["actual"] == {"response": "met_on_time", "resolution": "met_on_time"}
    assert request["what_if"] == {"response": "met_late", "resolution": "met_late"}
    assert body["summary"]["actual"]["resolution"]["compliance_percent"] == 100.0
    assert body["summary"]["what_if"]["resolution"]["compliance_percent"] == 0.0
    narrower = await sla.client.post("/api/v1/what-if", headers=lead, json={
        "since": since.isoformat(), "until": until.isoformat(), "policy": {**draft, "priorities": ["P1"]}})
    assert narrower.json()["requests"] == []  # the draft would not have applied to a P2

    for payload, status, field in (
            ({"since": until.isoformat(), "until": since.isoformat(), "policy": draft}, 422, "since"),
            ({"since": since.isoformat(), "until": until.isoformat(), "policy": {**draft, "resolution_seconds": 0}},
             422, "resolution_seconds"),
            ({"since": since.isoformat(), "until": until.isoformat(), "policy": {**draft, "warning_thresholds": [80, 50]}},
             422, "warning_thresholds"),
            ({"since": since.isoformat(), "until": until.isoformat(), "policy": draft,
              "calendar": {"time_zone": "Asia/Atlantis", "hours": {"mon": [["09:00", "18:00"]]}}}, 422, "time_zone"),
            ({"since": "2026-01-01T00:00:00", "until": until.isoformat(), "policy": draft}, 422, "since")):
        r = await sla.client.post("/api/v1/what-if", headers=lead, json=payload)
        assert r.status_code == status, (payload, r.text)
        assert any(e["field"].endswith(field) for e in r.json()["errors"]), (field, r.json())
    assert (await sla.client.post("/api/v1/what-if", headers=sla.token("bob", "ops", "agent"), json={
        "since": since.isoformat(), "until": until.isoformat(), "policy": draft})).status_code == 403
    assert (await rows(sla.settings.database_url, "select count(*) from events"))[0][0] == stored
