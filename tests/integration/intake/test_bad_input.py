"""Bad input never gets past the intake API, and never costs an event.

The sweeps walk the app's own OpenAPI document (GET /openapi.json), so an endpoint added tomorrow is
probed without touching this file; the tables below them cover what a schema cannot say (domain rules,
life-cycle transitions, cursors, idempotency). Every refusal must be RFC 9457 `application/problem+json`
with `status`, `title` and `detail`, plus an `errors` list naming the field when one field is at fault;
never a 500. After every bad request the event store must hold exactly the rows it held before: they are
counted in PostgreSQL (`select count(*) from events`), not through the API.

A 500 shows up here as an exception re-raised by the in-process transport; `send` turns it back into
the 500 a real client would get, so that the sweeps report every failing endpoint at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
from db_barrier import append_barrier

PROBLEM_JSON = "application/problem+json"
BODY_LIMIT = 256 * 1024
UNKNOWN_ID = "no-such-request-0001"

# (sub, org, roles) for `intake.token`
REQUESTER = ("u-req", "acme", "requester")
AGENT = ("agent-1", "ops", "agent")
MANAGER = ("mgr-1", "ops", "manager")
# Passes every route guard, so that only the input under test is wrong (staff roles count only from "ops").
SUPER = ("boss", "ops", "admin,requester")


# --- helpers: the event store, sending, judging a problem response ------------------------------------


async def send(intake, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """The app's answer; an exception the app did not handle becomes the 500 a real server would send."""
    try:
        return await intake.client.request(method, url, **kwargs)
    except Exception as exc:  # the ASGI transport re-raises unhandled app errors
        return httpx.Response(500, json={"unhandled": f"{type(exc).__name__}: {exc}"[:400]})


def _names(field: str, reported: Any) -> bool:
    """`reported` ("impact", "query.limit", "watchers.1", "header.Idempotency-Key") names `field`."""
    return isinstance(reported, str) and field.lower() in reported.lower().split(".")


def problem_code(r: httpx.Response) -> str | None:
    """The problem's code: the last segment of its `type` ("/problems/version-conflict" -> "version_conflict")."""
    try:
        kind = r.json().get("type")
    except (ValueError, AttributeError):
        return None
    return kind.rsplit("/", 1)[-1].replace("-", "_") if isinstance(kind, str) else None


def problem_complaints(r: httpx.Response, status: int | tuple[int, ...], field: str | None = None,
                       code: str | None = None) -> list[str]:
    """What is wrong with `r` as the expected problem response; empty when it is right."""
    allowed = status if isinstance(status, tuple) else (status,)
    if r.status_code not in allowed:
        return [f"expected {'/'.join(map(str, allowed))}, got {r.status_code}: {r.text[:240]}"]
    complaints = []
    if r.headers.get("content-type", "").split(";")[0].strip() != PROBLEM_JSON:
        complaints.append(f"content-type is {r.headers.get('content-type')!r}, not {PROBLEM_JSON}")
    try:
        body = r.json()
    except ValueError:
        return [*complaints, f"body is not JSON: {r.text[:200]}"]
    if not isinstance(body, dict):
        return [*complaints, f"body is not an object: {r.text[:200]}"]
    if body.get("status") != r.status_code:
        complaints.append(f"status member is {body.get('status')!r}")
    for member in ("title", "detail"):
        if not isinstance(body.get(member), str) or not body[member]:
            complaints.append(f"no {member!r} member")
    if field is not None:
        reported = [e.get("field") for e in body.get("errors") or [] if isinstance(e, dict)]
        if not any(_names(field, f) for f in reported):
            complaints.append(f"errors {reported} do not name {field!r} (detail: {body.get('detail')!r:.120})")
    if code is not None and problem_code(r) != code:
        complaints.append(f"problem code is {problem_code(r)!r}, not {code!r} (detail: {body.get('detail')!r:.120})")
    return complaints


async def refusal(intake, method: str, url: str, status: int | tuple[int, ...], field: str | None = None, *,
                  case: str = "", code: str | None = None, **kwargs: Any) -> list[str]:
    """Send one bad request; complaints about the answer, and about any event it appended."""
    before = await intake.event_count()
    r = await send(intake, method, url, **kwargs)
    appended = await intake.event_count() - before
    complaints = problem_complaints(r, status, field, code)
    if appended:
        complaints.append(f"{appended} event(s) appended for a refused request")
    label = f"{method} {url}" + (f" [{case}]" if case else "")
    return [f"{label}: {c}" for c in complaints]


async def assert_refused(intake, method: str, url: str, status: int | tuple[int, ...], field: str | None = None,
                         **kwargs: Any) -> None:
    complaints = await refusal(intake, method, url, status, field, **kwargs)
    assert not complaints, "\n".join(complaints)


def report(failures: list[str]) -> str:
    return f"{len(failures)} failure(s):\n" + "\n".join(failures)


async def submitted_request(intake, **overrides: Any) -> str:
    """A request that exists (status submitted), so that a probe is not refused for an unknown id."""
    return await intake.submit(intake.token(*REQUESTER), **overrides)


# --- the OpenAPI document as a list of operations ----------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any]
    schemas: dict[str, Any]  # components.schemas, for $ref

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def secured(self) -> bool:
        return bool(self.spec.get("security"))

    @property
    def is_command(self) -> bool:
        return self.method == "POST"

    def parameters(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p["in"] == where]

    def has_header(self, name: str) -> bool:
        return any(p["name"].lower() == name.lower() for p in self.parameters("header"))

    @property
    def takes_request_id(self) -> bool:
        return any(p["name"] == "request_id" for p in self.parameters("path"))

    @property
    def body_schema(self) -> dict[str, Any] | None:
        schema = self.spec.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        return self.resolve(schema) if schema else None

    def url(self, request_id: str = UNKNOWN_ID, **path_values: str) -> str:
        values = {}
        for p in self.parameters("path"):
            default = request_id if p["name"] == "request_id" else self.sample(p["schema"])
            values[p["name"]] = quote(path_values.get(p["name"], default), safe="")
        return self.path.format(**values)

    def valid_body(self, **known: Any) -> dict[str, Any] | None:
        """The smallest body the schema accepts: its required properties, each with a sample value
        (or the `known` value for that name, e.g. a `target_id` that exists)."""
        schema = self.body_schema
        if schema is None:
            return None
        return {name: known.get(name, self.sample(schema["properties"][name])) for name in schema.get("required", [])}

    # JSON Schema -> values. An unknown construct fails loudly: teach this test the new schema.

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.schemas[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def concrete(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The schema itself, or the non-null branch of an optional (`anyOf: [X, null]`)."""
        schema = self.resolve(schema)
        if "anyOf" in schema:
            schema = self.resolve(next(s for s in schema["anyOf"] if s.get("type") != "null"))
        return schema

    def sample(self, schema: dict[str, Any]) -> Any:
        s = self.concrete(schema)
        if "enum" in s:
            return s["enum"][0]
        kind = s.get("type")
        if kind == "string":
            if s.get("format") == "date":
                return "2020-01-02"
            if s.get("format") == "date-time":
                return "2020-01-02T03:04:05+00:00"
            return "sample-1".ljust(s.get("minLength", 0), "x")
        if kind in ("integer", "number"):
            if "minimum" in s:
                return int(s["minimum"])
            return int(s.get("exclusiveMinimum", 0)) + 1
        if kind == "boolean":
            return True
        if kind == "array":
            return []
        if kind == "object":
            return {}
        raise AssertionError(f"{self}: no sample value for schema {s}")

    def wrong_type(self, schema: dict[str, Any]) -> Any:
        """A value of the wrong JSON type (or outside the enum) for `schema`."""
        s = self.concrete(schema)
        if "enum" in s:
            return "no-such-value"
        if s.get("format") in ("date", "date-time"):
            return "yesterday"
        wrong = {"string": 12345, "integer": "ten", "number": "lots", "boolean": "maybe", "array": "not-a-list",
                 "object": "not-an-object"}
        return wrong[s["type"]]

    def bad_values(self, param: dict[str, Any]) -> list[str]:
        """Query or path values outside the parameter's schema (types, ranges, lengths, formats)."""
        s = self.concrete(param["schema"])
        if s.get("type") == "array":
            s = self.concrete(s["items"])
        values = []
        if "enum" in s:
            values.append("no-such-value")
        kind = s.get("type")
        if kind == "integer":
            values += ["abc", "1.5"]
            if "minimum" in s:
                values.append(str(int(s["minimum"]) - 1))
            if "maximum" in s:
                values.append(str(int(s["maximum"]) + 1))
        elif kind == "boolean":
            values.append("maybe")
        elif kind == "string":
            if s.get("format") == "date-time":
                values += ["not-a-date", "2026-01-31T00:00:00"]  # the second one has no offset: naive
            if "maxLength" in s:
                values.append("x" * (s["maxLength"] + 1))
            if "pattern" in s:  # a value the pattern refuses: NUL breaks every pattern here, "!" the id ones
                values.append("bad\x00value" if "\\x00" in s["pattern"] else "not allowed!")
        return values


async def operations(intake) -> list[Operation]:
    r = await intake.client.get("/openapi.json")
    assert r.status_code == 200, r.text
    doc = r.json()
    schemas = doc.get("components", {}).get("schemas", {})
    return [Operation(method.upper(), path, spec, schemas)
            for path, item in doc["paths"].items() for method, spec in item.items()
            if method in ("get", "post", "put", "patch", "delete")]


# --- the sweeps: every operation of the OpenAPI document ----------------------------------------------


async def test_openapi_lists_the_intake_operations(intake):
    ops = {str(op) for op in await operations(intake)}
    for expected in ("POST /api/v1/requests", "GET /api/v1/requests", "POST /api/v1/requests/{request_id}/accept",
                     "POST /api/v1/requests/{request_id}/time-entries", "GET /api/v1/requests/{request_id}/timeline",
                     "GET /api/v1/queues/{team}", "GET /api/v1/stats/backlog"):
        assert expected in ops
    assert len(ops) >= 30


def _claims(intake, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "boss", "org": "acme", "roles": ["admin", "requester"], "iss": intake.settings.auth_issuer,
              "aud": intake.settings.auth_audience, "iat": now, "exp": now + 3600, **changes}
    return {k: v for k, v in claims.items() if v is not None}


def _signed(intake, key: str | None = None, **changes: Any) -> dict[str, str]:
    secret = key or intake.settings.auth_dev_key.get_secret_value()
    return {"Authorization": "Bearer " + jwt.encode(_claims(intake, **changes), secret, algorithm="HS256")}


BAD_CREDENTIALS = {
    "no Authorization header": lambda i: {},
    "empty bearer": lambda i: {"Authorization": "Bearer "},
    "garbage token": lambda i: {"Authorization": "Bearer not-a-jwt"},
    "basic scheme": lambda i: {"Authorization": "Basic Ym9zczpzZWNyZXQ="},
    "foreign signing key": lambda i: _signed(i, key="someone-elses-key-0123456789-0123456789"),
    "expired": lambda i: _signed(i, exp=int(time.time()) - 60, iat=int(time.time()) - 3600),
    "wrong audience": lambda i: _signed(i, aud="another-api"),
    "wrong issuer": lambda i: _signed(i, iss="https://evil.example"),
    "no organisation claim": lambda i: _signed(i, org=None),
    "unsigned (alg none)": lambda i: {"Authorization": "Bearer " + jwt.encode(_claims(i), None, algorithm="none")},
}


@pytest.mark.parametrize("credentials", list(BAD_CREDENTIALS))
async def test_every_secured_operation_needs_a_valid_token(intake, credentials):
    rid = await submitted_request(intake)
    headers = BAD_CREDENTIALS[credentials](intake)
    failures: list[str] = []
    secured = [op for op in await operations(intake) if op.secured]
    assert secured
    for op in secured:
        url = op.url(rid)
        before = await intake.event_count()
        r = await send(intake, op.method, url, json=op.valid_body(), headers=headers)
        failures += [f"{op}: {c}" for c in problem_complaints(r, 401)]
        if r.status_code == 401 and not r.headers.get("www-authenticate", "").lower().startswith("bearer"):
            failures.append(f"{op}: 401 without 'WWW-Authenticate: Bearer ...' ({r.headers.get('www-authenticate')})")
        if await intake.event_count() != before:
            failures.append(f"{op}: appended an event without a valid token")
    assert not failures, report(failures)


async def test_public_operations_need_no_token_and_do_not_fail(intake):
    public = [op for op in await operations(intake) if not op.secured]
    assert {str(op) for op in public} >= {"GET /healthz", "GET /readyz"}
    assert "GET /metrics" not in {str(op) for op in public}  # the worker's port serves it (OPSAT_API_METRICS)
    for op in public:
        r = await send(intake, op.method, op.url(), headers={"Authorization": "Bearer not-a-jwt"})
        assert r.status_code not in (401, 403, 500), (str(op), r.status_code, r.text[:300])


BODY_VARIANTS = {
    # label: (request kwargs from the operation's valid body, expected status, field the errors must name)
    "truncated JSON": (lambda b: {"content": b'{"reason": "x', "headers": {"content-type": "application/json"}},
                       400, "body"),
    "not JSON at all": (lambda b: {"content": b"reason=x", "headers": {"content-type": "application/json"}},
                        400, "body"),
    "JSON array": (lambda b: {"json": [b]}, 422, "body"),
    "JSON string": (lambda b: {"json": "please accept"}, 422, "body"),
    "JSON number": (lambda b: {"json": 42}, 422, "body"),
    "JSON null": (lambda b: {"content": b"null", "headers": {"content-type": "application/json"}}, 422, "body"),
    "no body": (lambda b: {}, 422, "body"),
    "unknown field": (lambda b: {"json": {**b, "surprise": 1}}, 422, "surprise"),
    "not JSON content type": (lambda b: {"content": json.dumps(b).encode(), "headers": {"content-type": "text/plain"}},
                              (415, 422), None),
}


@pytest.mark.parametrize("variant", list(BODY_VARIANTS))
async def test_every_command_refuses_a_malformed_body(intake, variant):
    rid = await submitted_request(intake)
    build, status, field = BODY_VARIANTS[variant]
    failures: list[str] = []
    with_body = [op for op in await operations(intake) if op.body_schema is not None]
    assert with_body
    for op in with_body:
        kwargs = build(op.valid_body())
        headers = {**intake.token(*SUPER), **kwargs.pop("headers", {})}
        failures += await refusal(intake, op.method, op.url(rid), status, field, headers=headers, **kwargs)
    assert not failures, report(failures)


async def test_every_body_field_refuses_a_value_of_the_wrong_type(intake):
    rid = await submitted_request(intake)
    failures: list[str] = []
    for op in await operations(intake):
        schema = op.body_schema
        if schema is None:
            continue
        for name, prop in schema["properties"].items():
            body = {**op.valid_body(), name: op.wrong_type(prop)}
            failures += await refusal(intake, op.method, op.url(rid), 422, name, case=f"{name}={body[name]!r}",
                                      json=body, headers=intake.token(*SUPER))
    assert not failures, report(failures)


async def test_every_required_body_field_is_required(intake):
    rid = await submitted_request(intake)
    failures: list[str] = []
    checked = 0
    for op in await operations(intake):
        schema = op.body_schema
        for name in (schema or {}).get("required", []):
            body = {k: v for k, v in op.valid_body().items() if k != name}
            failures += await refusal(intake, op.method, op.url(rid), 422, name, case=f"without {name}", json=body,
                                      headers=intake.token(*SUPER))
            checked += 1
    assert checked > 20
    assert not failures, report(failures)


async def _chunks(size: int, chunk: int = 32 * 1024) -> AsyncIterator[bytes]:
    """A JSON body streamed without Content-Length (Transfer-Encoding: chunked)."""
    yield b'{"pad": "'
    sent = 0
    while sent < size:
        yield b"x" * min(chunk, size - sent)
        sent += chunk
    yield b'"}'


OVERSIZE = BODY_LIMIT + 1024


async def test_every_operation_refuses_an_oversize_body_announced_by_content_length(intake):
    rid = await submitted_request(intake)
    body = b'{"pad": "' + b"x" * OVERSIZE + b'"}'
    failures: list[str] = []
    for op in await operations(intake):
        headers = {**intake.token(*SUPER), "content-type": "application/json"}
        failures += await refusal(intake, op.method, op.url(rid), 413, content=body, headers=headers)
    assert not failures, report(failures)


async def test_every_command_refuses_an_oversize_body_streamed_without_content_length(intake):
    rid = await submitted_request(intake)
    failures: list[str] = []
    for op in await operations(intake):
        if op.body_schema is None:
            continue  # a route that reads no body never sees the stream
        headers = {**intake.token(*SUPER), "content-type": "application/json"}
        failures += await refusal(intake, op.method, op.url(rid), 413, content=_chunks(OVERSIZE), headers=headers)
    assert not failures, report(failures)


async def test_a_body_at_the_limit_is_read_and_judged_on_its_content(intake):
    rid = await submitted_request(intake)
    prefix, suffix = b'{"body": "', b'"}'
    body = prefix + b"x" * (BODY_LIMIT - len(prefix) - len(suffix)) + suffix
    assert len(body) == BODY_LIMIT
    await assert_refused(intake, "POST", f"/api/v1/requests/{rid}/replies", 422, "body", content=body,
                         headers={**intake.token(*REQUESTER), "content-type": "application/json"})


async def test_every_query_parameter_refuses_values_outside_its_schema(intake):
    rid = await submitted_request(intake)
    failures: list[str] = []
    checked = 0
    for op in await operations(intake):
        for param in op.parameters("query"):
            for value in op.bad_values(param):
                failures += await refusal(intake, op.method, op.url(rid), 422, param["name"],
                                          case=f"{param['name']}={value[:40]!r}", params={param["name"]: value},
                                          headers=intake.token(*SUPER))
                checked += 1
    assert checked > 20
    assert not failures, report(failures)


async def test_every_path_parameter_refuses_values_outside_its_schema(intake):
    failures: list[str] = []
    for op in await operations(intake):
        for param in op.parameters("path"):
            for value in op.bad_values(param):
                failures += await refusal(intake, op.method, op.url(**{param["name"]: value}), 422, param["name"],
                                          json=op.valid_body(), headers=intake.token(*SUPER))
    assert not failures, report(failures)


async def test_every_request_route_answers_404_for_an_unknown_id(intake):
    known = await submitted_request(intake)  # the store is not empty: the id is unknown, not the table
    failures: list[str] = []
    routes = [op for op in await operations(intake) if op.takes_request_id]
    assert len(routes) > 20
    for op in routes:
        body = op.valid_body(target_id=known)  # a link target that exists: only the path id is unknown
        failures += await refusal(intake, op.method, op.url(UNKNOWN_ID), 404, json=body,
                                  headers=intake.token(*SUPER))
    assert not failures, report(failures)


BAD_IF_MATCH = ["abc", '"x"', "1", 'W/"1"', '"1234567890"', "-1", '"3", "4"', "**", ""]


@pytest.mark.parametrize("value", BAD_IF_MATCH)
async def test_every_command_refuses_a_malformed_if_match(intake, value):
    rid = await submitted_request(intake)
    failures: list[str] = []
    commands = [op for op in await operations(intake) if op.has_header("If-Match")]
    assert len(commands) > 20
    for op in commands:
        failures += await refusal(intake, op.method, op.url(rid), 422, "If-Match", json=op.valid_body(),
                                  headers={**intake.token(*SUPER), "If-Match": value})
    assert not failures, report(failures)


async def test_every_command_refuses_an_overlong_idempotency_key(intake):
    rid = await submitted_request(intake)
    failures: list[str] = []
    commands = [op for op in await operations(intake) if op.has_header("Idempotency-Key")]
    assert len(commands) > 20
    for op in commands:
        failures += await refusal(intake, op.method, op.url(rid), 422, "Idempotency-Key", json=op.valid_body(),
                                  headers={**intake.token(*SUPER), "Idempotency-Key": "k" * 201})
    assert not failures, report(failures)


# --- explicit tables ----------------------------------------------------------------------------------


def case_id(value: Any) -> str:
    """Readable test ids: `impact=true`, `minutes=0`, raw bodies as text."""
    if isinstance(value, dict):
        return ",".join(f"{k}={json.dumps(v)[:24]}" for k, v in value.items())
    if isinstance(value, bytes):
        return value.decode()[:48]
    return str(value)


SUBMIT = {"kind": "incident", "channel": "portal", "title": "VPN down", "description": "cannot connect",
          "impact": 2, "urgency": 1}


@pytest.mark.parametrize(("change", "field"), [
    ({"impact": "high"}, "impact"),
    ({"impact": 0}, "impact"),
    ({"impact": 4}, "impact"),
    ({"impact": 1.5}, "impact"),
    ({"impact": True}, "impact"),  # a boolean is not a level, even though Python says True == 1
    ({"urgency": "ten"}, "urgency"),
    ({"urgency": None}, "urgency"),
    ({"urgency": [1]}, "urgency"),
    ({"kind": "outage"}, "kind"),
    ({"channel": "fax"}, "channel"),
    ({"title": "   "}, "title"),
    ({"title": "x" * 201}, "title"),
    ({"title": 42}, "title"),
    ({"title": {"en": "VPN down"}}, "title"),
    ({"description": "x" * 20_001}, "description"),
    ({"watchers": "alice"}, "watchers"),
    ({"watchers": ["alice", "alice"]}, "watchers"),  # domain rule: no repeats
    ({"watchers": [f"user-{i}" for i in range(51)]}, "watchers"),
    ({"requires_approval": "maybe"}, "requires_approval"),
    ({"kind": "change", "requires_approval": False}, "requires_approval"),  # domain rule: changes need approval
    ({"requester_id": ""}, "requester_id"),
    ({"severity": "sev1"}, "severity"),
], ids=case_id)
async def test_submit_refuses_bad_fields(intake, change, field):
    await assert_refused(intake, "POST", "/api/v1/requests", 422, field, json={**SUBMIT, **change},
                         headers=intake.token(*REQUESTER))


@pytest.mark.parametrize(("path", "body", "field"), [
    ("time-entries", {"minutes": "ten"}, "minutes"),
    ("time-entries", {"minutes": 0}, "minutes"),
    ("time-entries", {"minutes": 1441}, "minutes"),
    ("time-entries", {"minutes": 1.5}, "minutes"),
    ("time-entries", {"minutes": True}, "minutes"),  # the domain refuses booleans; the API must not coerce them
    ("time-entries", {"minutes": None}, "minutes"),
    ("time-entries", {"minutes": 30, "work_date": "yesterday"}, "work_date"),
    ("time-entries", {"minutes": 30, "work_date": "2999-01-01"}, "work_date"),  # domain rule: not in the future
    ("time-entries", {"minutes": 30, "note": "  "}, "note"),
    ("requirement/changes/assess", {"change_id": "c-1", "effort_hours": "lots", "impact_summary": "x"}, "effort_hours"),
    ("requirement/changes/assess", {"change_id": "c-1", "effort_hours": 100_001, "impact_summary": "x"},
     "effort_hours"),
    ("requirement/changes/assess", {"change_id": "c-1", "effort_hours": -3, "impact_summary": "x"}, "effort_hours"),
    ("requirement/changes/assess", {"change_id": "c-1", "effort_hours": True, "impact_summary": "x"}, "effort_hours"),
    ("requirement/changes/assess", b'{"change_id": "c-1", "effort_hours": NaN, "impact_summary": "x"}', "effort_hours"),
    ("requirement/changes/assess", b'{"change_id": "c-1", "effort_hours": Infinity, "impact_summary": "x"}',
     "effort_hours"),
    ("requirement/changes", {"change_id": "not allowed!", "scope": "s", "acceptance_criteria": "a", "reason": "r"},
     "change_id"),
    ("priority", {"priority": "P9", "reason": "because"}, "priority"),
    ("priority", {"priority": "p1", "reason": "because"}, "priority"),
    ("priority", {"priority": "P1", "reason": ""}, "reason"),
    ("links", {"target_id": "other-1", "link_type": "sibling_of"}, "link_type"),
    ("assign", {"team": ""}, "team"),
    ("assign", {"team": ["network"]}, "team"),
    ("accept", {"assignee": ["agent-1"]}, "assignee"),
    ("accept", {}, "team"),  # domain rule: a request without a team needs one named on accept
    ("replies", {"body": ""}, "body"),
    ("replies", {"body": "x" * 20_001}, "body"),
    ("reject", {"reason": "   "}, "reason"),
    ("watchers", {"user_id": None}, "user_id"),
], ids=case_id)
async def test_commands_refuse_bad_fields(intake, path, body, field):
    rid = await submitted_request(intake)  # no team
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    headers = {**intake.token(*SUPER), "content-type": "application/json"}
    await assert_refused(intake, "POST", f"/api/v1/requests/{rid}/{path}", 422, field, headers=headers, **kwargs)


async def test_a_self_link_is_refused(intake):
    rid = await submitted_request(intake)
    await assert_refused(intake, "POST", f"/api/v1/requests/{rid}/links", 422, "target_id",
                         json={"target_id": rid, "link_type": "duplicate_of"}, headers=intake.token(*AGENT))


async def test_a_link_to_an_unknown_request_is_404(intake):
    rid = await submitted_request(intake)
    await assert_refused(intake, "POST", f"/api/v1/requests/{rid}/links", 404, "target_id",
                         json={"target_id": UNKNOWN_ID, "link_type": "duplicate_of"}, headers=intake.token(*AGENT))


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": "0"}, "limit"),
    ({"limit": "-5"}, "limit"),
    ({"limit": "201"}, "limit"),
    ({"limit": "abc"}, "limit"),
    ({"cursor": "!!!"}, "cursor"),
    ({"cursor": "x" * 501}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b"not json").decode()}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b"\xff\xfe").decode()}, "cursor"),
    ({"cursor": _cursor([1, 2])}, "cursor"),
    ({"cursor": _cursor({"t": 1, "id": "x"})}, "cursor"),
    ({"cursor": _cursor({"t": "yesterday", "id": "x"})}, "cursor"),
    ({"cursor": _cursor({"t": "0001-01-01T00:00:00+14:00", "id": "x"})}, "cursor"),  # before year 1 in UTC
    ({"submitted_from": "2026-01-31T00:00:00"}, "submitted_from"),  # naive
    ({"submitted_to": "2026-01-31T00:00:00"}, "submitted_to"),  # naive
    ({"submitted_from": "31/01/2026"}, "submitted_from"),
    ({"submitted_from": "0"}, "submitted_from"),  # not Unix time
    ({"submitted_to": "1700000000"}, "submitted_to"),
    ({"submitted_from": "0001-01-01T00:00:00+14:00"}, "submitted_from"),  # out of range once in UTC
    ({"submitted_to": "9999-12-31T23:59:59-14:00"}, "submitted_to"),  # out of range once in UTC
    ({"status": "open"}, "status"),
    ({"priority": "P0"}, "priority"),
    ({"kind": "outage"}, "kind"),
    ({"open_only": "maybe"}, "open_only"),
    ({"team": "x" * 201}, "team"),
], ids=case_id)
async def test_listing_refuses_bad_query_parameters(intake, params, field):
    await submitted_request(intake)
    await assert_refused(intake, "GET", "/api/v1/requests", 422, field, params=params,
                         headers=intake.token(*AGENT))


@pytest.mark.parametrize(("url", "params", "field"), [
    ("/api/v1/requests/{rid}", {"min_version": "0"}, "min_version"),
    ("/api/v1/requests/{rid}", {"min_version": "latest"}, "min_version"),
    ("/api/v1/queues/network", {"limit": "0"}, "limit"),
    ("/api/v1/queues/network", {"limit": "501"}, "limit"),
    ("/api/v1/stats/backlog", {"kind": "outage"}, "kind"),
], ids=case_id)
async def test_other_queries_refuse_bad_query_parameters(intake, url, params, field):
    rid = await submitted_request(intake)
    await assert_refused(intake, "GET", url.format(rid=rid), 422, field, params=params, headers=intake.token(*AGENT))


# PostgreSQL cannot store U+0000 in text or jsonb: it must be refused as input, not crash the append or query.
@pytest.mark.parametrize(("method", "url", "kwargs", "field"), [
    ("POST", "/api/v1/requests", {"json": {**SUBMIT, "title": "VPN\u0000down"}}, "title"),
    ("POST", "/api/v1/requests", {"json": {**SUBMIT, "watchers": ["ali\u0000ce"]}}, "watchers"),
    ("POST", "/api/v1/requests/{rid}/replies", {"json": {"body": "hello\u0000"}}, "body"),
    ("POST", "/api/v1/requests/{rid}/assign", {"json": {"team": "net\u0000work"}}, "team"),
    ("POST", "/api/v1/requests/{rid}/links", {"json": {"target_id": "a\u0000b", "link_type": "duplicate_of"}},
     "target_id"),
    ("GET", "/api/v1/requests", {"params": {"organisation": "ac\u0000me"}}, "organisation"),
    ("GET", "/api/v1/requests", {"params": {"cursor": _cursor({"t": "2026-01-01T00:00:00+00:00", "id": "a\u0000"})}},
     "cursor"),
    ("GET", "/api/v1/queues/net%00work", {}, "team"),
    ("GET", "/api/v1/stats/backlog", {"params": {"team": "net\u0000work"}}, "team"),
], ids=["submit title", "submit watcher", "reply", "assign team", "link target", "list organisation",
        "list cursor", "queue team", "backlog team"])
async def test_nul_characters_are_refused_not_a_500(intake, method, url, kwargs, field):
    rid = await submitted_request(intake)
    await assert_refused(intake, method, url.format(rid=rid), 422, field, headers=intake.token(*SUPER), **kwargs)


# --- illegal transitions (409) ------------------------------------------------------------------------

_PATH_TO = {
    "submitted": [],
    "accepted": [("accept", AGENT, {"team": "network", "assignee": "agent-1"})],
    "in_progress": [("accept", AGENT, {"team": "network", "assignee": "agent-1"}), ("start", AGENT, None)],
    "resolved": [("accept", AGENT, {"team": "network", "assignee": "agent-1"}), ("start", AGENT, None),
                 ("resolve", AGENT, {"solution": "restarted the concentrator"})],
    "closed": [("accept", AGENT, {"team": "network", "assignee": "agent-1"}), ("start", AGENT, None),
               ("resolve", AGENT, {"solution": "restarted the concentrator"}),
               ("accept-delivery", REQUESTER, {"comment": "works"})],
    "cancelled": [("cancel", REQUESTER, {"reason": "found the cable"})],
}


async def request_in(intake, status: str, **overrides: Any) -> str:
    """A request (impact 2 x urgency 1 = P2, requested by REQUESTER) driven through the API to `status`."""
    rid = await submitted_request(intake, **overrides)
    for path, who, body in _PATH_TO[status]:
        r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=intake.token(*who))
        assert r.status_code == 200, (path, r.text)
    return rid


ILLEGAL = [
    # the request's status, the command, who issues it, its (valid) body
    ("submitted", "start", AGENT, None),
    ("submitted", "resolve", AGENT, {"solution": "rebooted"}),
    ("submitted", "request-info", AGENT, {"question": "which office?"}),
    ("submitted", "provide-info", REQUESTER, {"answer": "Shanghai"}),
    ("submitted", "accept-delivery", REQUESTER, {"comment": "fine"}),
    ("submitted", "reject-delivery", REQUESTER, {"reason": "still broken"}),
    ("submitted", "reopen", REQUESTER, {"reason": "again"}),
    ("submitted", "approval/approve", MANAGER, {"comment": "ok"}),  # no approval pending for an incident
    ("submitted", "approval/decline", MANAGER, {"reason": "no"}),
    ("submitted", "requirement/confirm", REQUESTER, None),  # nothing recorded to confirm
    ("submitted", "requirement/changes", REQUESTER, {"scope": "s", "acceptance_criteria": "a", "reason": "r"}),
    ("submitted", "priority", AGENT, {"priority": "P2", "reason": "no change"}),
    ("submitted", "watchers/remove", AGENT, {"user_id": "nobody"}),
    ("submitted", "links/remove", AGENT, {"target_id": "other-1", "link_type": "duplicate_of"}),
    ("accepted", "accept", AGENT, {"team": "network"}),
    ("in_progress", "accept", AGENT, {"team": "network"}),
    ("in_progress", "reject", AGENT, {"reason": "spam"}),
    ("in_progress", "start", AGENT, None),
    ("in_progress", "assign", AGENT, {"team": "network", "assignee": "agent-1"}),  # unchanged assignment
    ("resolved", "resolve", AGENT, {"solution": "again"}),
    ("resolved", "cancel", REQUESTER, {"reason": "never mind"}),
    ("closed", "accept-delivery", REQUESTER, {"comment": "twice"}),
    ("closed", "replies", REQUESTER, {"body": "hello?"}),
    ("closed", "assign", AGENT, {"team": "desktop"}),
    ("closed", "priority", AGENT, {"priority": "P1", "reason": "late"}),
    ("cancelled", "accept", AGENT, {"team": "network"}),
    ("cancelled", "cancel", REQUESTER, {"reason": "twice"}),
]


@pytest.mark.parametrize(("status", "path", "who", "body"), ILLEGAL, ids=[f"{s} -> {p}" for s, p, *_ in ILLEGAL])
async def test_illegal_transitions_conflict(intake, status, path, who, body):
    rid = await request_in(intake, status)
    await assert_refused(intake, "POST", f"/api/v1/requests/{rid}/{path}", 409, json=body, headers=intake.token(*who))


async def _steps(intake, rid: str, steps: list[tuple[str, tuple[str, str, str], Any]]) -> None:
    for path, who, body in steps:
        r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=intake.token(*who))
        assert r.status_code == 200, (path, r.text)


CONFIRMED_REQUIREMENT = [("requirement", AGENT, {"scope": "new laptop", "acceptance_criteria": "boots"}),
                         ("requirement/confirm", REQUESTER, None)]


async def test_work_cannot_start_before_the_requirement_is_confirmed(intake):
    rid = await submitted_request(intake, kind="service_request", team="desk")  # needs no approval
    await _steps(intake, rid, [("accept", AGENT, {})])
    await assert_refused(intake, "POST", f"/api/v1/requests/{rid}/start", 409, code="requirement_not_confirmed",
                         headers=intake.token(*AGENT))
    await _steps(intake, rid, [*CONFIRMED_REQUIREMENT, ("start", AGENT, None)])


async def test_work_cannot_start_while_approval_is_pending(intake):
    rid = await submitted_request(intake, kind="change", team="desk")
    # A change also needs a confirmed requirement: confirm it, so that only the approval is missing.
    await _steps(intake, rid, [*CONFIRMED_REQUIREMENT, ("accept", AGENT, {})])
    await assert_refused(intake, "POST", f"/api/v1/requests/{rid}/start", 409, code="approval_pending",
                         headers=intake.token(*AGENT))
    await _steps(intake, rid, [("approval/approve", MANAGER, {"comment": "ok"}), ("start", AGENT, None)])


@pytest.mark.parametrize(("path", "body"), [
    ("requirement/changes/assess", {"change_id": "no-such-change", "effort_hours": 4, "impact_summary": "small"}),
    ("requirement/changes/approve", {"change_id": "no-such-change"}),
    ("requirement/changes/reject", {"change_id": "no-such-change", "reason": "no"}),
], ids=case_id)
async def test_an_unknown_requirement_change_is_404(intake, path, body):
    rid = await submitted_request(intake, kind="service_request", team="desk")
    for step, who, step_body in [("requirement", AGENT, {"scope": "new laptop", "acceptance_criteria": "boots"}),
                                 ("requirement/confirm", REQUESTER, None)]:
        r = await intake.client.post(f"/api/v1/requests/{rid}/{step}", json=step_body, headers=intake.token(*who))
        assert r.status_code == 200, (step, r.text)
    await assert_refused(intake, "POST", f"/api/v1/requests/{rid}/{path}", 404, "change_id", json=body,
                         headers=intake.token(*MANAGER))


# --- stale If-Match --------------------------------------------------------------------------------


# A stale If-Match is refused by the precondition: (status, problem code) in one place.
STALE_IF_MATCH = (412, "version_mismatch")

_CHANGE = {"change_id": "scope-2", "scope": "two laptops", "acceptance_criteria": "both boot", "reason": "new hire"}
_REQUIREMENT = [("requirement", AGENT, {"scope": "a laptop", "acceptance_criteria": "boots"}),
                ("requirement/confirm", REQUESTER, None)]
_LINK = {"target_id": "{other}", "link_type": "duplicate_of"}

# Every command with If-Match, in a state where it is allowed: (submit overrides, steps there, who, body).
# "{other}" in a body is another request that exists.
ALLOWED_COMMANDS: dict[str, tuple[dict[str, Any], list[tuple[str, tuple[str, str, str], Any]], tuple, Any]] = {
    "accept": ({}, [], AGENT, {"team": "network"}),
    "reject": ({}, [], AGENT, {"reason": "spam"}),
    "start": ({}, _PATH_TO["accepted"], AGENT, None),
    "request-info": ({}, _PATH_TO["in_progress"], AGENT, {"question": "which office?"}),
    "provide-info": ({}, [*_PATH_TO["in_progress"], ("request-info", AGENT, {"question": "which office?"})],
                     REQUESTER, {"answer": "Shanghai"}),
    "resolve": ({}, _PATH_TO["in_progress"], AGENT, {"solution": "rebooted"}),
    "accept-delivery": ({}, _PATH_TO["resolved"], REQUESTER, {"comment": "fine"}),
    "reject-delivery": ({}, _PATH_TO["resolved"], REQUESTER, {"reason": "still broken"}),
    "reopen": ({}, _PATH_TO["closed"], REQUESTER, {"reason": "again"}),
    "cancel": ({}, [], REQUESTER, {"reason": "never mind"}),
    "priority": ({}, [], AGENT, {"priority": "P1", "reason": "whole floor"}),  # submitted as P2
    "approval/approve": ({"kind": "change", "team": "desk"}, [], MANAGER, {"comment": "ok"}),
    "approval/decline": ({"kind": "change", "team": "desk"}, [], MANAGER, {"reason": "too risky"}),
    "requirement": ({"kind": "service_request"}, [], AGENT, {"scope": "a laptop", "acceptance_criteria": "boots"}),
    "requirement/confirm": ({"kind": "service_request"}, _REQUIREMENT[:1], REQUESTER, None),
    "requirement/changes": ({"kind": "service_request"}, _REQUIREMENT, REQUESTER, _CHANGE),
    "requirement/changes/assess": ({"kind": "service_request"}, [*_REQUIREMENT, ("requirement/changes", REQUESTER,
                                                                                 _CHANGE)],
                                   AGENT, {"change_id": "scope-2", "effort_hours": 4, "impact_summary": "small"}),
    "requirement/changes/approve": ({"kind": "service_request"}, [
        *_REQUIREMENT, ("requirement/changes", REQUESTER, _CHANGE),
        ("requirement/changes/assess", AGENT, {"change_id": "scope-2", "effort_hours": 4, "impact_summary": "small"})],
        MANAGER, {"change_id": "scope-2"}),
    "requirement/changes/reject": ({"kind": "service_request"}, [*_REQUIREMENT, ("requirement/changes", REQUESTER,
                                                                                 _CHANGE)],
                                   MANAGER, {"change_id": "scope-2", "reason": "no budget"}),
    "assign": ({}, [], AGENT, {"team": "desktop", "assignee": "agent-2"}),
    "watchers": ({}, [], AGENT, {"user_id": "carol"}),
    "watchers/remove": ({"watchers": ["carol"]}, [], AGENT, {"user_id": "carol"}),
    "replies": ({}, [], REQUESTER, {"body": "any news?"}),
    "notes": ({}, [], AGENT, {"body": "internal"}),
    "links": ({}, [], AGENT, _LINK),
    "links/remove": ({}, [("links", AGENT, _LINK)], AGENT, _LINK),
    "time-entries": ({}, [], AGENT, {"minutes": 30}),
}


def _with_other(body: Any, other: str) -> Any:
    return {k: v.format(other=other) if isinstance(v, str) else v for k, v in body.items()} if body else body


async def test_every_command_refuses_a_stale_if_match(intake):
    """Each command in a state that allows it: every stale version is refused by the precondition (not by a
    domain rule) and appends nothing; the current version then succeeds."""
    status, code = STALE_IF_MATCH
    paths = {op.path.removeprefix("/api/v1/requests/{request_id}/") for op in await operations(intake)
             if op.has_header("If-Match")}
    assert paths == set(ALLOWED_COMMANDS), "teach ALLOWED_COMMANDS the new command(s)"
    other = await submitted_request(intake)
    failures: list[str] = []
    for path, (overrides, steps, who, body) in ALLOWED_COMMANDS.items():
        rid = await submitted_request(intake, **overrides)
        body = _with_other(body, other)
        for step, step_who, step_body in steps:
            r = await intake.client.post(f"/api/v1/requests/{rid}/{step}", json=_with_other(step_body, other),
                                         headers=intake.token(*step_who))
            assert r.status_code == 200, (path, step, r.text)
        version = len(steps) + 1
        url = f"/api/v1/requests/{rid}/{path}"
        for stale in (f'"{version + 5}"', f'"{version - 1}"', f'"{version + 1}"'):  # strict form; others are 422
            failures += await refusal(intake, "POST", url, status, code=code, case=f"If-Match: {stale}", json=body,
                                      headers={**intake.token(*who), "If-Match": stale})
        r = await intake.client.post(url, json=body, headers={**intake.token(*who), "If-Match": f'"{version}"'})
        if r.status_code != 200:
            failures.append(f"POST {url} with the current If-Match: {r.status_code} {r.text[:200]}")
    assert not failures, report(failures)


# --- Idempotency-Key ----------------------------------------------------------------------------------


async def test_a_repeated_submit_replays_the_first_result_and_appends_nothing(intake):
    headers = {**intake.token(*REQUESTER), "Idempotency-Key": "submit-1"}
    first = await intake.client.post("/api/v1/requests", json=SUBMIT, headers=headers)
    assert first.status_code == 201, first.text
    assert first.json()["replayed"] is False
    count = await intake.event_count()
    for _ in range(2):
        again = await intake.client.post("/api/v1/requests", json=SUBMIT, headers=headers)
        assert again.status_code == 201, again.text
        assert again.json() == {**first.json(), "replayed": True}
        assert again.headers["Location"] == first.headers["Location"]
        assert again.headers["ETag"] == first.headers["ETag"]
    assert await intake.event_count() == count


async def test_a_repeated_command_replays_even_when_it_would_no_longer_be_allowed(intake):
    rid = await submitted_request(intake)
    headers = {**intake.token(*AGENT), "Idempotency-Key": "accept-1"}
    body = {"team": "network", "assignee": "agent-1"}
    first = await intake.client.post(f"/api/v1/requests/{rid}/accept", json=body, headers=headers)
    assert first.status_code == 200, first.text
    count = await intake.event_count()
    again = await intake.client.post(f"/api/v1/requests/{rid}/accept", json=body, headers=headers)
    assert again.status_code == 200, again.text  # a second accept without the key is a 409
    assert again.json() == {**first.json(), "replayed": True}
    assert await intake.event_count() == count
    await assert_refused(intake, "POST", f"/api/v1/requests/{rid}/accept", 409, json=body,
                         headers=intake.token(*AGENT))


@pytest.mark.intake_settings(event_store_group_commit=False)  # racing sessions, as of separate API processes
async def test_concurrent_repeats_of_a_submit_append_once(intake):
    # One process's group commit would serialise the repeats before the database; several processes do not.
    headers = {**intake.token(*REQUESTER), "Idempotency-Key": "submit-race"}
    before = await intake.event_count()
    # All five pass the key look-up before any commits and block at the insert: the repeats can only
    # learn the first result from the `idempotency_keys` primary key refusing their own key.
    async with append_barrier(intake.settings.database_url) as barrier:
        answers = await barrier.race([intake.client.post("/api/v1/requests", json=SUBMIT, headers=headers)
                                      for _ in range(5)])
    assert [a.status_code for a in answers] == [201] * 5, [a.text for a in answers]
    assert len({a.json()["request_id"] for a in answers}) == 1
    assert sum(not a.json()["replayed"] for a in answers) == 1
    assert await intake.event_count() == before + 1

async def test_concurrent_repeats_of_a_submit_in_one_process_append_once(intake):
    """Group commit: the repeats share no group (one key per group); the later ones find the first result."""
    headers = {**intake.token(*REQUESTER), "Idempotency-Key": "submit-race-grouped"}
    before = await intake.event_count()
    answers = await asyncio.gather(*(intake.client.post("/api/v1/requests", json=SUBMIT, headers=headers)
                                     for _ in range(5)))
    assert [a.status_code for a in answers] == [201] * 5, [a.text for a in answers]
    assert len({a.json()["request_id"] for a in answers}) == 1
    assert sum(not a.json()["replayed"] for a in answers) == 1
    assert await intake.event_count() == before + 1


@pytest.mark.parametrize("reuse", ["submit with another body", "command with another body",
                                   "same body on another request", "same body on another command"])
async def test_an_idempotency_key_reused_for_a_different_request_is_422(intake, reuse):
    rid, other = await submitted_request(intake), await submitted_request(intake)
    key = {"Idempotency-Key": "key-1"}
    agent = {**intake.token(*AGENT), **key}
    first, second = {
        "submit with another body": (("/api/v1/requests", SUBMIT), ("/api/v1/requests", {**SUBMIT, "impact": 1})),
        "command with another body": ((f"/api/v1/requests/{rid}/replies", {"body": "first"}),
                                      (f"/api/v1/requests/{rid}/replies", {"body": "second"})),
        "same body on another request": ((f"/api/v1/requests/{rid}/replies", {"body": "hi"}),
                                         (f"/api/v1/requests/{other}/replies", {"body": "hi"})),
        "same body on another command": ((f"/api/v1/requests/{rid}/replies", {"body": "hi"}),
                                         (f"/api/v1/requests/{rid}/notes", {"body": "hi"})),
    }[reuse]
    r = await intake.client.post(first[0], json=first[1], headers=agent)
    assert r.status_code in (200, 201), r.text
    await assert_refused(intake, "POST", second[0], 422, "Idempotency-Key", json=second[1], headers=agent)
