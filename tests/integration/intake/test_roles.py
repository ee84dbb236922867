"""Who may see and do what in intake (DOMAIN.md "Actors and roles").

- A requester sees only their own organisation's requests: another organisation's request is filtered out
  of lists and counts, and reading it directly is a 404 (never a 403: its existence is not disclosed).
- Internal notes and time entries are for staff and auditors only.
- Only staff (agent, team lead, manager, admin) accept, resolve and reassign; approvals need a manager (or
  admin); the auditor reads everything and issues no command. Every refusal is a 403 problem and appends
  nothing to the event store (rows counted in PostgreSQL).
- Accepting or rejecting a delivery is for the request's own requester: a colleague of the same
  organisation gets a 403 from the domain rule (`requester="own"` in aggregate._RULES), staff too.

Reads go through the read model, so those tests run the worker and wait until it has caught up.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

PROBLEM_JSON = "application/problem+json"

# (sub, org, roles) for `intake.token`
ALICE = ("alice", "acme", "requester")  # the request's requester
BOB = ("bob", "acme", "requester")  # a colleague in the same organisation
CAROL = ("carol", "globex", "requester")  # another organisation
AGENT = ("agent-1", "ops", "agent")
LEAD = ("lead-1", "ops", "team_lead")
MANAGER = ("mgr-1", "ops", "manager")
ADMIN = ("admin-1", "ops", "admin")
AUDITOR = ("audit-1", "ops", "auditor")  # reader roles count only from the provider's organisations
RISK = ("risk-1", "ops", "risk_officer")
SERVICE = ("monitoring", "ops", "service")

ROLES = {"requester": ALICE, "agent": AGENT, "team_lead": LEAD, "manager": MANAGER, "admin": ADMIN,
         "auditor": AUDITOR, "risk_officer": RISK, "service": SERVICE}
STAFF = {"agent", "team_lead", "manager", "admin"}
APPROVERS = {"manager", "admin"}
UNKNOWN_ID = "no-such-request-0001"


# --- helpers -------------------------------------------------------------------------------------------


async def post(intake, who: tuple[str, str, str], rid: str, path: str, body: Any = None) -> httpx.Response:
    return await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=intake.token(*who))


async def get(intake, who: tuple[str, str, str], url: str, **params: Any) -> httpx.Response:
    return await intake.client.get(url, params=params, headers=intake.token(*who))


async def ok(intake, who: tuple[str, str, str], rid: str, path: str, body: Any = None) -> int:
    """Run a command that must succeed; the request's new version."""
    r = await post(intake, who, rid, path, body)
    assert r.status_code == 200, (who, path, r.text)
    return r.json()["version"]


def assert_problem(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON), r.headers["content-type"]
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"], body


async def assert_refused(intake, who: tuple[str, str, str], rid: str, path: str, body: Any, status: int) -> None:
    """The command is refused with `status` and leaves the event store as it was."""
    before = await intake.event_count()
    r = await post(intake, who, rid, path, body)
    assert_problem(r, status)
    assert await intake.event_count() == before, f"{who} {path}: appended an event although refused"


async def listed(intake, who: tuple[str, str, str], **filters: Any) -> set[str]:
    r = await get(intake, who, "/api/v1/requests", **filters)
    assert r.status_code == 200, r.text
    return {item["id"] for item in r.json()["items"]}


# Requests driven through the API to the state a check needs (requester ALICE unless said otherwise).
ACCEPT = ("accept", AGENT, {"team": "network", "assignee": "agent-1"})
SETUPS: dict[str, tuple[dict[str, Any], list[tuple[str, tuple[str, str, str], Any]]]] = {
    "submitted": ({}, []),
    "accepted": ({}, [ACCEPT]),
    "in_progress": ({}, [ACCEPT, ("start", AGENT, None)]),
    "resolved": ({}, [ACCEPT, ("start", AGENT, None), ("resolve", AGENT, {"solution": "replaced the switch"})]),
    "change awaiting approval": ({"kind": "change", "team": "network"}, []),
    "requirement change assessed": ({"kind": "service_request", "team": "desk"}, [
        ("requirement", AGENT, {"scope": "a laptop", "acceptance_criteria": "it boots"}),
        ("requirement/confirm", ALICE, None),
        ("requirement/changes", ALICE, {"change_id": "scope-2", "scope": "two laptops",
                                        "acceptance_criteria": "both boot", "reason": "new hire"}),
        ("requirement/changes/assess", AGENT, {"change_id": "scope-2", "effort_hours": 2, "impact_summary": "small"}),
    ]),
}


async def request_in(intake, setup: str, requester: tuple[str, str, str] = ALICE) -> tuple[str, int]:
    """A new request in the state `setup` names; its id and version."""
    overrides, steps = SETUPS[setup]
    rid = await intake.submit(intake.token(*requester), **overrides)
    version = 1
    for path, who, body in steps:
        version = await ok(intake, who, rid, path, body)
    return rid, version


# --- organisation boundary -----------------------------------------------------------------------------


async def test_a_requester_sees_only_their_own_organisation(intake):
    async with intake.worker():
        mine = await intake.submit(intake.token(*ALICE), title="acme VPN down")
        theirs = await intake.submit(intake.token(*CAROL), title="globex printer jammed")
        await intake.wait_for(mine, 1)
        await intake.wait_for(theirs, 1)

        assert await listed(intake, ALICE) == {mine}
        assert await listed(intake, BOB) == {mine}  # the whole organisation, not only one's own requests
        assert await listed(intake, CAROL) == {theirs}
        assert await listed(intake, ALICE, organisation="globex") == set()  # asking for it does not help
        assert await listed(intake, AGENT) == {mine, theirs}

        backlog = await get(intake, ALICE, "/api/v1/stats/backlog")
        assert backlog.status_code == 200 and backlog.json()["total"] == 1, backlog.text
        assert (await get(intake, AGENT, "/api/v1/stats/backlog")).json()["total"] == 2

        # Reading another organisation's request looks exactly like reading one that does not exist.
        for suffix in ("", "/timeline"):
            other = await get(intake, ALICE, f"/api/v1/requests/{theirs}{suffix}")
            unknown = await get(intake, ALICE, f"/api/v1/requests/{UNKNOWN_ID}{suffix}")
            assert_problem(other, 404)
            assert_problem(unknown, 404)
            same_words = unknown.json()["detail"].replace(UNKNOWN_ID, "<id>")
            assert other.json()["detail"].replace(theirs, "<id>") == same_words
            assert "globex" not in other.text and "printer" not in other.text

        # Commands on it are 404 too, whatever the command.
        for path, body in [("cancel", {"reason": "not mine"}), ("replies", {"body": "hello?"}),
                           ("watchers", {"user_id": "alice"}), ("accept-delivery", {"comment": "ok"})]:
            await assert_refused(intake, ALICE, theirs, path, body, 404)

        assert (await get(intake, CAROL, f"/api/v1/requests/{theirs}")).status_code == 200


async def test_a_requester_cannot_submit_for_someone_else(intake):
    body = {"kind": "incident", "title": "VPN down", "impact": 2, "urgency": 2}
    for change in ({"organisation_id": "globex"}, {"requester_id": "bob"}):
        before = await intake.event_count()
        r = await intake.client.post("/api/v1/requests", json={**body, **change}, headers=intake.token(*ALICE))
        assert_problem(r, 403)
        assert [e["field"] for e in r.json()["errors"]] == list(change)
        assert await intake.event_count() == before
    # Staff may submit on a requester's behalf.
    r = await intake.client.post("/api/v1/requests", json={**body, "organisation_id": "acme", "requester_id": "alice"},
                                 headers=intake.token(*AGENT))
    assert r.status_code == 201, r.text


# --- internal notes --------------------------------------------------------------------------------------

NOTE = "suspect the firmware on fw-03, do not tell the customer yet"
TIME_NOTE = "remote session on the firewall"


async def test_internal_notes_and_time_are_for_staff_and_auditors_only(intake):
    async with intake.worker():
        rid = await intake.submit(intake.token(*ALICE))
        await ok(intake, AGENT, rid, "accept", {"team": "network", "assignee": "agent-1"})
        await ok(intake, AGENT, rid, "notes", {"body": NOTE})
        await ok(intake, AGENT, rid, "replies", {"body": "we are on it"})
        version = await ok(intake, AGENT, rid, "time-entries", {"minutes": 30, "note": TIME_NOTE})
        await intake.wait_for(rid, version)

        for who, staff_view in [(ALICE, False), (BOB, False), (AGENT, True), (MANAGER, True), (AUDITOR, True)]:
            r = await get(intake, who, f"/api/v1/requests/{rid}/timeline")
            assert r.status_code == 200, (who, r.text)
            entries = r.json()
            kinds = [e["event_type"].split(".")[-2] for e in entries]
            internal = [e for e in entries if e["visibility"] != "public"]
            if staff_view:
                assert kinds == ["submitted", "accepted", "internal_note_added", "reply_added", "time_logged"], who
                assert [e["data"].get("body") for e in internal if "note" in e["event_type"]] == [NOTE]
            else:
                assert kinds == ["submitted", "accepted", "reply_added"], who
                assert internal == []
                assert NOTE not in r.text and TIME_NOTE not in r.text and "fw-03" not in r.text

        detail = (await get(intake, ALICE, f"/api/v1/requests/{rid}")).json()
        assert detail["time_by_agent"] is None and detail["time_spent_minutes"] is None
        for who in (AGENT, AUDITOR):
            detail = (await get(intake, who, f"/api/v1/requests/{rid}")).json()
            assert detail["time_by_agent"] == {"agent-1": 30}, who


# --- the command matrix -----------------------------------------------------------------------------------

MATRIX = [
    # command, state it needs, body, roles that may issue it (all others: 403)
    ("accept", "submitted", {"team": "network", "assignee": "agent-1"}, STAFF),
    ("reject", "submitted", {"reason": "duplicate of last week's ticket"}, STAFF),
    ("resolve", "in_progress", {"solution": "replaced the switch"}, STAFF),
    ("assign", "accepted", {"team": "desktop", "assignee": "agent-2", "reason": "wrong queue"}, STAFF),
    ("notes", "submitted", {"body": "internal"}, STAFF),
    ("approval/approve", "change awaiting approval", {"comment": "go ahead"}, APPROVERS),
    ("approval/decline", "change awaiting approval", {"reason": "too risky this week"}, APPROVERS),
    ("requirement/changes/approve", "requirement change assessed", {"change_id": "scope-2"}, APPROVERS),
    ("requirement/changes/reject", "requirement change assessed", {"change_id": "scope-2", "reason": "no"}, APPROVERS),
]


@pytest.mark.parametrize(("command", "state", "body", "allowed"), MATRIX, ids=[m[0] for m in MATRIX])
async def test_who_may_issue_a_staff_command(intake, command, state, body, allowed):
    expected = {role: 200 if role in allowed else 403 for role in ROLES}
    seen = {}
    for role, who in ROLES.items():
        rid, _ = await request_in(intake, state)
        before = await intake.event_count()
        r = await post(intake, who, rid, command, body)
        seen[role] = r.status_code
        if r.status_code == 403:
            assert_problem(r, 403)
            assert await intake.event_count() == before, f"{role}: refused but appended"
    assert seen == expected


async def test_nobody_approves_their_own_request(intake):
    own = intake.token(*MANAGER)
    rid = await intake.submit(own, kind="change", team="network")  # in the manager's own name
    await assert_refused(intake, MANAGER, rid, "approval/approve", {"comment": "self-service"}, 403)
    await ok(intake, ("mgr-2", "ops", "manager"), rid, "approval/approve", {"comment": "four eyes"})


# --- the requester's own decisions ---------------------------------------------------------------------------


@pytest.mark.parametrize(("command", "body", "status_after"), [
    ("accept-delivery", {"comment": "works again"}, "closed"),
    ("reject-delivery", {"reason": "still drops every hour"}, "reopened"),
])
async def test_only_the_request_s_own_requester_decides_on_the_delivery(intake, command, body, status_after):
    async with intake.worker():
        rid, _ = await request_in(intake, "resolved")
        # aggregate.decide: a requester of the same organisation passes the organisation check and then
        # fails the `requester="own"` rule -> Forbidden (403); the rule names no staff role, so staff,
        # managers and admins are refused too; another organisation never learns the request exists (404).
        for who, status in [(BOB, 403), (AGENT, 403), (MANAGER, 403), (ADMIN, 403), (AUDITOR, 403), (CAROL, 404)]:
            await assert_refused(intake, who, rid, command, body, status)
        version = await ok(intake, ALICE, rid, command, body)
        view = await intake.wait_for(rid, version, intake.token(*ALICE))
        assert view["status"] == status_after


async def test_a_colleague_may_reply_and_watch_but_not_cancel(intake):
    rid = await intake.submit(intake.token(*ALICE))
    await ok(intake, BOB, rid, "replies", {"body": "same problem on my desk"})  # organisation-wide
    await ok(intake, BOB, rid, "watchers", {"user_id": "bob"})  # watching in one's own name
    await assert_refused(intake, BOB, rid, "watchers", {"user_id": "dave"}, 403)  # not someone else
    await assert_refused(intake, BOB, rid, "cancel", {"reason": "not needed"}, 403)  # own requests only
    await ok(intake, ALICE, rid, "cancel", {"reason": "not needed"})


# --- the auditor ---------------------------------------------------------------------------------------------


async def test_the_auditor_reads_everything(intake):
    async with intake.worker():
        mine = await intake.submit(intake.token(*ALICE), team="network")
        theirs = await intake.submit(intake.token(*CAROL), team="network")
        version = await ok(intake, AGENT, mine, "notes", {"body": NOTE})
        await intake.wait_for(mine, version)
        await intake.wait_for(theirs, 1)

        assert await listed(intake, AUDITOR) == {mine, theirs}
        for rid in (mine, theirs):
            assert (await get(intake, AUDITOR, f"/api/v1/requests/{rid}")).status_code == 200
        timeline = await get(intake, AUDITOR, f"/api/v1/requests/{mine}/timeline")
        assert timeline.status_code == 200 and NOTE in timeline.text
        queue = await get(intake, AUDITOR, "/api/v1/queues/network")
        assert queue.status_code == 200 and {r["id"] for r in queue.json()} == {mine, theirs}
        backlog = await get(intake, AUDITOR, "/api/v1/stats/backlog")
        assert backlog.status_code == 200 and backlog.json()["total"] == 2


# Every command of the OpenAPI document (so a new one is covered): a valid body from its schema.


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in schema:
        return _resolve(next(s for s in schema["anyOf"] if s.get("type") != "null"), schemas)
    return schema


def _sample(schema: dict[str, Any], schemas: dict[str, Any]) -> Any:
    s = _resolve(schema, schemas)
    if "enum" in s:
        return s["enum"][0]
    samples = {"string": "sample-1", "integer": int(s.get("minimum", 1)), "number": 1, "boolean": True,
               "array": [], "object": {}}
    return samples[s["type"]]


async def commands(intake) -> list[tuple[str, dict[str, Any] | None, str]]:
    """(path template, a valid body, description) of every POST in the app's OpenAPI document."""
    doc = (await intake.client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    found = []
    for path, item in doc["paths"].items():
        if "post" not in item:
            continue
        op = item["post"]
        ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        body = None
        if ref:
            schema = _resolve(ref, schemas)
            body = {name: _sample(schema["properties"][name], schemas) for name in schema.get("required", [])}
        found.append((path, body, op.get("description", "")))
    assert len(found) > 20
    return found


async def test_the_auditor_issues_no_command(intake):
    rid = await intake.submit(intake.token(*ALICE))
    refused = {}
    for path, body, _ in await commands(intake):
        before = await intake.event_count()
        r = await intake.client.post(path.format(request_id=rid), json=body, headers=intake.token(*AUDITOR))
        refused[path] = (r.status_code, await intake.event_count() - before)
    assert refused == {path: (403, 0) for path in refused}


# Who may call each command, written here from DOMAIN.md ("Actors and roles", the intake section) and not
# read from the app: the route guards must agree with it. The domain narrows some further (own request,
# own organisation), which the tests above cover.
REQUESTER = {"requester"}
CUSTOMER_SIDE = REQUESTER | STAFF
CALLERS: dict[str, set[str]] = {
    # staff, and monitoring's service accounts, open requests on a customer's behalf
    "/api/v1/requests": CUSTOMER_SIDE | {"service"},
    # the life cycle is worked by the provider's staff (受理 → 处理 → 验证)
    "accept": STAFF, "reject": STAFF, "start": STAFF, "request-info": STAFF, "resolve": STAFF,
    "priority": STAFF,  # "an agent may override with a reason"
    "provide-info": CUSTOMER_SIDE,  # staff may record an answer given by phone
    # "the requester accepts (-> closed) or rejects with a reason"; cancels and reopens are the requester's
    "accept-delivery": REQUESTER, "reject-delivery": REQUESTER, "reopen": REQUESTER, "cancel": REQUESTER,
    # manager approval for catalogue kinds
    "approval/approve": APPROVERS, "approval/decline": APPROVERS,
    # requirement: recorded by staff, confirmed by the requester; a change is proposed by either side,
    # assessed by staff, approved or rejected by a manager
    "requirement": STAFF, "requirement/confirm": REQUESTER, "requirement/changes": CUSTOMER_SIDE,
    "requirement/changes/assess": STAFF, "requirement/changes/approve": APPROVERS,
    "requirement/changes/reject": APPROVERS,
    # assignment is staff's; watchers and public replies include the customer; internal notes, links and
    # time are staff only
    "assign": STAFF, "watchers": CUSTOMER_SIDE, "watchers/remove": CUSTOMER_SIDE, "replies": CUSTOMER_SIDE,
    "notes": STAFF, "links": STAFF, "links/remove": STAFF, "time-entries": STAFF,
}


def command_name(path: str) -> str:
    return path.removeprefix("/api/v1/requests/{request_id}/")


async def test_every_command_admits_exactly_the_roles_domain_md_names(intake):
    """Roles outside a command's callers get 403 and append nothing; its callers are not refused for their role
    (they may still meet a 409 from the request's state)."""
    rid = await intake.submit(intake.token(*ALICE))
    found = await commands(intake)
    assert {command_name(path) for path, _, _ in found} == set(CALLERS), "add the new command(s) to CALLERS"
    failures = []
    for path, body, _ in found:
        callers = CALLERS[command_name(path)]
        assert callers <= set(ROLES)
        for role, who in ROLES.items():
            before = await intake.event_count()
            r = await intake.client.post(path.format(request_id=rid), json=body, headers=intake.token(*who))
            appended = await intake.event_count() - before
            if role in callers and r.status_code == 403:
                failures.append(f"POST {path} as {role}: refused for a role DOMAIN.md allows: {r.text[:160]}")
            if role not in callers and (r.status_code != 403 or appended):
                failures.append(f"POST {path} as {role}: {r.status_code}, {appended} event(s) {r.text[:160]}")
    assert not failures, "\n".join(failures)
