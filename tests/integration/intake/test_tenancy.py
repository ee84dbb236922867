"""Tenancy, idempotency scope and the order of checks, against the real stores (README "Tenancy").

- The service provider's organisations (`ops` in the tests) hold the staff roles; a staff role claimed by a
  customer organisation's token counts for nothing, so such a token sees and changes nothing of another
  tenant, and nothing that a requester of its own organisation could not.
- An Idempotency-Key belongs to its caller (issuer, organisation, subject): the same key from another
  organisation's user with the same subject is a new request, never a replay of someone else's.
- Checks run in this order: authentication (401), authorisation and tenant visibility (403/404),
  preconditions (412), input (400/422).

Event rows are counted in PostgreSQL, not through the API.
"""

from __future__ import annotations

from typing import Any

import httpx

from opsat.common.testing.helpers import scalar

PROBLEM_JSON = "application/problem+json"

ALICE = ("alice", "acme", "requester")
ALICE_ELSEWHERE = ("alice", "evil", "requester")  # the same subject in another organisation
CUSTOMER_AGENT = ("mallory", "globex", "agent,manager,admin,auditor,risk_officer,service,requester")
AGENT = ("agent-1", "ops", "agent")
SUBMIT = {"kind": "incident", "title": "VPN down", "impact": 2, "urgency": 1}
NOTE = "firmware on fw-03 suspected; do not tell the customer yet"


async def event_count(intake, stream: str | None = None) -> int:
    if stream is None:
        return await scalar(intake.settings.database_url, "select count(*) from events")
    return await scalar(intake.settings.database_url, "select count(*) from events where stream_id = $1", stream)


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:300]}"
    assert r.headers["content-type"].split(";")[0] == PROBLEM_JSON, r.headers["content-type"]
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"], body
    return body


async def test_a_customer_organisation_s_staff_roles_count_for_nothing(intake):
    async with intake.worker():
        rid = await intake.submit(intake.token(*ALICE), team="network")
        version = await intake.client.post(f"/api/v1/requests/{rid}/notes", json={"body": NOTE},
                                           headers=intake.token(*AGENT))
        assert version.status_code == 200, version.text
        await intake.wait_for(rid, version.json()["version"])
        mallory = intake.token(*CUSTOMER_AGENT)

        # Sees nothing of acme: not in lists, queues or counts; reading it directly is "not found".
        page = await intake.client.get("/api/v1/requests", headers=mallory)
        assert page.status_code == 200 and page.json()["items"] == [], page.text
        queue = await intake.client.get("/api/v1/queues/network", headers=mallory)
        assert queue.status_code == 403, queue.text  # queues are for staff
        backlog = await intake.client.get("/api/v1/stats/backlog", headers=mallory)
        assert backlog.status_code == 200 and backlog.json()["total"] == 0, backlog.text
        for suffix in ("", "/timeline"):
            r = await intake.client.get(f"/api/v1/requests/{rid}{suffix}", headers=mallory)
            assert_problem(r, 404)
            assert NOTE not in r.text and "acme" not in r.text

        # Changes nothing: staff commands are refused by role, the rest do not find the request.
        before = await event_count(intake)
        for path, body, status in [("notes", {"body": "hello"}, 403),
                                   ("priority", {"priority": "P1", "reason": "mine now"}, 403),
                                   ("assign", {"team": "globex-desk"}, 403),
                                   ("accept", {"team": "network"}, 403),
                                   ("replies", {"body": "hi"}, 404),
                                   ("watchers", {"user_id": "mallory"}, 404)]:
            r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=mallory)
            assert_problem(r, status)
        assert await event_count(intake) == before

        # Nor submits in another organisation's or user's name.
        for change in ({"organisation_id": "acme"}, {"requester_id": "alice"}):
            r = await intake.client.post("/api/v1/requests", json={**SUBMIT, **change}, headers=mallory)
            assert_problem(r, 403)
        assert await event_count(intake) == before


async def test_an_idempotency_key_replays_only_for_the_caller_who_sent_it(intake):
    key = {"Idempotency-Key": "mail-down-1"}
    first = await intake.client.post("/api/v1/requests", json=SUBMIT, headers={**intake.token(*ALICE), **key})
    assert first.status_code == 201, first.text
    before = await event_count(intake)

    second = await intake.client.post("/api/v1/requests", json=SUBMIT,
                                      headers={**intake.token(*ALICE_ELSEWHERE), **key})
    assert second.status_code == 201, second.text
    assert second.json()["replayed"] is False
    assert second.json()["request_id"] != first.json()["request_id"]
    assert await event_count(intake) == before + 1
    tenant = await scalar(intake.settings.database_url,
                          "select metadata->>'tenant' from events where stream_id = $1", second.json()["request_id"])
    assert tenant == "evil"

    # The caller's own repeat still replays.
    again = await intake.client.post("/api/v1/requests", json=SUBMIT, headers={**intake.token(*ALICE), **key})
    assert again.json() == {**first.json(), "replayed": True}


async def test_a_replayed_key_does_not_tell_another_tenant_that_a_request_exists(intake):
    rid = await intake.submit(intake.token(*ALICE))
    key = {"Idempotency-Key": "reply-1"}
    ok = await intake.client.post(f"/api/v1/requests/{rid}/replies", json={"body": "any news?"},
                                  headers={**intake.token(*ALICE), **key})
    assert ok.status_code == 200, ok.text
    r = await intake.client.post(f"/api/v1/requests/{rid}/replies", json={"body": "any news?"},
                                 headers={**intake.token(*ALICE_ELSEWHERE), **key})
    assert_problem(r, 404)


async def test_if_match_on_another_tenant_s_request_is_not_found(intake):
    rid = await intake.submit(intake.token(*ALICE))
    before = await event_count(intake)
    foreign = ("carol", "globex", "requester")
    for value in ('"7"', '"1"'):
        r = await intake.client.post(f"/api/v1/requests/{rid}/replies", json={"body": "hi"},
                                     headers={**intake.token(*foreign), "If-Match": value})
        body = assert_problem(r, 404)
        assert "version" not in body["detail"], body
    unknown = await intake.client.post("/api/v1/requests/no-such-request-0001/replies", json={"body": "hi"},
                                       headers={**intake.token(*foreign), "If-Match": '"7"'})
    assert assert_problem(unknown, 404)["detail"].replace("no-such-request-0001", "<id>") == \
        body["detail"].replace(rid, "<id>")
    assert await event_count(intake) == before


async def test_a_stale_if_match_on_an_own_request_is_412_and_a_current_one_passes(intake):
    rid = await intake.submit(intake.token(*ALICE))
    before = await event_count(intake, rid)
    r = await intake.client.post(f"/api/v1/requests/{rid}/replies", json={"body": "hi"},
                                 headers={**intake.token(*ALICE), "If-Match": '"7"'})
    assert assert_problem(r, 412)["type"] == "/problems/version-mismatch"
    assert await event_count(intake, rid) == before
    for value in ('"1"', "*"):
        r = await intake.client.post(f"/api/v1/requests/{rid}/replies", json={"body": f"hi {value}"},
                                     headers={**intake.token(*ALICE), "If-Match": value})
        assert r.status_code == 200, (value, r.text)


async def test_without_a_token_malformed_requests_are_401_not_400_or_422(intake):
    rid = await intake.submit(intake.token(*ALICE))
    before = await event_count(intake)
    json_type = {"content-type": "application/json"}
    cases = [
        ("POST", "/api/v1/requests", {"content": b'{"kind": ', "headers": json_type}),
        ("POST", "/api/v1/requests", {"json": {"kind": "outage", "impact": 9}}),
        ("POST", f"/api/v1/requests/{rid}/replies", {"content": b"not json", "headers": json_type}),
        ("POST", f"/api/v1/requests/{rid}/replies", {"json": {"body": "hi"}, "headers": {"If-Match": "abc"}}),
        ("POST", "/api/v1/requests/bad id!/accept", {"json": {}}),
        ("GET", "/api/v1/requests", {"params": {"limit": "abc", "status": "open"}}),
        ("GET", f"/api/v1/requests/{rid}", {"params": {"min_version": "latest"}}),
    ]
    for token in ({}, {"Authorization": "Bearer not-a-jwt"}):
        for method, url, kwargs in cases:
            kwargs = {**kwargs, "headers": {**kwargs.get("headers", {}), **token}}
            r = await intake.client.request(method, url, **kwargs)
            assert_problem(r, 401)
            assert r.headers["www-authenticate"].startswith("Bearer"), (method, url)
    assert await event_count(intake) == before


async def test_with_a_token_of_the_wrong_role_malformed_requests_are_403_not_422(intake):
    rid = await intake.submit(intake.token(*ALICE))
    r = await intake.client.post(f"/api/v1/requests/{rid}/notes", content=b"not json",
                                 headers={**intake.token(*ALICE), "content-type": "application/json"})
    assert_problem(r, 403)
    r = await intake.client.get("/api/v1/queues/network", params={"limit": "abc"}, headers=intake.token(*ALICE))
    assert_problem(r, 403)


async def test_malformed_input_on_another_tenant_s_request_is_not_found_like_well_formed_input(intake):
    rid = await intake.submit(intake.token(*ALICE))
    before = await event_count(intake)
    foreign = intake.token("carol", "globex", "requester")
    json_type = {"content-type": "application/json"}
    bodies = [{"json": {"body": ["not", "text"]}}, {"content": b'{"body": ', "headers": json_type}]
    for kwargs in bodies:
        for if_match in ({}, {"If-Match": '"7"'}, {"If-Match": '"1"'}):
            r = await intake.client.post(f"/api/v1/requests/{rid}/replies", **{
                **kwargs, "headers": {**kwargs.get("headers", {}), **foreign, **if_match}})
            body = assert_problem(r, 404)
            assert "version" not in body["detail"], body
        unknown = await intake.client.post("/api/v1/requests/no-such-request-0001/replies", **{
            **kwargs, "headers": {**kwargs.get("headers", {}), **foreign}})
        assert_problem(unknown, 404)
    assert await event_count(intake) == before


async def test_on_an_own_request_a_stale_if_match_comes_before_malformed_input(intake):
    rid = await intake.submit(intake.token(*ALICE))
    own = intake.token(*ALICE)
    r = await intake.client.post(f"/api/v1/requests/{rid}/replies", json={"body": ["x"]},
                                 headers={**own, "If-Match": '"7"'})
    assert assert_problem(r, 412)["type"] == "/problems/version-mismatch"
    r = await intake.client.post(f"/api/v1/requests/{rid}/replies", json={"body": ["x"]},
                                 headers={**own, "If-Match": '"1"'})
    assert assert_problem(r, 422)["errors"][0]["field"] == "body"
    r = await intake.client.post(f"/api/v1/requests/{rid}/replies", json={"body": ["x"]},
                                 headers={**own, "If-Match": "seven"})
    assert assert_problem(r, 422)


async def test_an_oversize_body_is_413_only_after_authentication(intake):
    """Announced by Content-Length it is refused before routing: 401 without a valid token, else 413 for any id
    (an unknown one too, so it tells nothing). Found while read, every check before input comes first."""
    rid = await intake.submit(intake.token(*ALICE))
    before = await event_count(intake)
    huge = b'{"body": "' + b"x" * (intake.settings.max_body_bytes + 10) + b'"}'
    url = f"/api/v1/requests/{rid}/replies"
    json_type = {"content-type": "application/json"}

    async def streamed():  # no Content-Length: the limit is found while reading
        for i in range(0, len(huge), 8192):
            yield huge[i:i + 8192]

    for content in (huge, streamed):
        def send(headers: dict[str, str]):  # a fresh generator per request
            return intake.client.post(url, content=content() if callable(content) else content,
                                      headers={**json_type, **headers})

        for token in ({}, {"Authorization": "Bearer not-a-jwt"}):
            r = await send(token)
            assert_problem(r, 401)
        foreign = await send(intake.token("carol", "globex", "requester"))
        assert_problem(foreign, 404 if callable(content) else 413)
        if not callable(content):
            unknown = await intake.client.post("/api/v1/requests/no-such-request-0001/replies", content=content,
                                               headers={**json_type, **intake.token("carol", "globex", "requester")})
            assert_problem(unknown, 413)
        assert_problem(await send(intake.token(*ALICE)), 413)
        assert_problem(await intake.client.post("/api/v1/requests", content=content() if callable(content)
                                                else content, headers=json_type), 401)
    assert await event_count(intake) == before
