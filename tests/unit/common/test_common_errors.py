"""errors.install_error_handlers: every failure becomes RFC 9457 problem+json (in-process TestClient)."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI, HTTPException, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from opsat.common.auth import NotAllowed, Unauthenticated
from opsat.common.domain import (
    AlreadyExists,
    Conflict,
    DomainError,
    Forbidden,
    Gone,
    InvalidInput,
    InvalidTransition,
    NotFound,
)
from opsat.common.errors import PROBLEM_JSON, _field_path, _slug, install_error_handlers, status_for

SECRET = "db password is hunter2"


class Widget(BaseModel):
    name: str = Field(min_length=1)
    count: int
    tags: list[str] = []


ERRORS: dict[str, DomainError] = {
    "not-found": NotFound("widget w1 not found"),
    "forbidden": Forbidden("not your widget"),
    "conflict": Conflict("widget is locked"),
    "transition": InvalidTransition("cannot close a new widget"),
    "exists": AlreadyExists("widget w1 exists"),
    "invalid": InvalidInput("count must be positive", field="count"),
    "invalid-no-field": InvalidInput("something is off"),
    "custom-code": Conflict("stream changed", code="version_conflict"),
    "plain-domain": DomainError("refused"),
}


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/domain/{name}")
    async def domain(name: str) -> None:
        raise ERRORS[name]

    @app.post("/widgets", status_code=201)
    async def create(widget: Widget) -> Widget:
        return widget

    @app.get("/search")
    async def search(limit: int = Query(ge=1, le=100)) -> dict:
        return {"limit": limit}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(SECRET)

    @app.get("/http")
    async def http() -> None:
        raise HTTPException(status_code=429, detail="slow down", headers={"Retry-After": "3"})

    @app.get("/unauthenticated")
    async def unauthenticated() -> None:
        raise Unauthenticated("missing bearer token")

    @app.get("/not-allowed")
    async def not_allowed() -> None:
        raise NotAllowed("requires one of the roles: agent")

    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(make_app(), raise_server_exceptions=False)


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str)
    return body


@pytest.mark.parametrize(
    ("name", "status", "type_"),
    [
        ("not-found", 404, "/problems/not-found"),
        ("forbidden", 403, "/problems/forbidden"),
        ("conflict", 409, "/problems/conflict"),
        ("transition", 409, "/problems/invalid-transition"),
        ("exists", 409, "/problems/already-exists"),
        ("invalid", 422, "/problems/invalid-input"),
        ("invalid-no-field", 422, "/problems/invalid-input"),
        ("custom-code", 409, "/problems/version-conflict"),
        ("plain-domain", 422, "/problems/domain-error"),
    ],
)
def test_domain_errors_map_to_status_and_type(client: TestClient, name: str, status: int, type_: str):
    body = assert_problem(client.get(f"/domain/{name}"), status)
    assert body["type"] == type_
    assert body["detail"] == ERRORS[name].detail
    assert body["instance"] == f"/domain/{name}"


def test_titles_follow_the_status(client: TestClient):
    assert client.get("/domain/not-found").json()["title"] == "Not found"
    assert client.get("/domain/exists").json()["title"] == "Conflict"
    assert client.get("/domain/invalid").json()["title"] == "Invalid input"


def test_invalid_input_names_the_field(client: TestClient):
    body = assert_problem(client.get("/domain/invalid"), 422)
    assert body["errors"] == [{"field": "count", "reason": "count must be positive"}]


def test_a_domain_error_without_field_has_no_errors_list(client: TestClient):
    for name in ("invalid-no-field", "not-found", "conflict"):
        assert "errors" not in client.get(f"/domain/{name}").json()


def test_status_for_prefers_the_most_specific_class():
    assert status_for(NotFound("x")) == 404
    assert status_for(InvalidTransition("x")) == 409
    assert status_for(AlreadyExists("x")) == 409
    assert status_for(Forbidden("x")) == 403
    assert status_for(InvalidInput("x")) == 422
    assert status_for(Gone("x")) == 410

    class Custom(NotFound):
        pass

    assert status_for(Custom("x")) == 404


def test_domain_error_code_defaults_to_the_class_name():
    assert NotFound("x").code == "NotFound"
    assert Conflict("x", code="version_conflict").code == "version_conflict"
    assert InvalidInput("bad", field="f").field == "f"
    assert str(InvalidInput("bad")) == "bad"


# --- request validation ------------------------------------------------------------------


def test_valid_body_passes(client: TestClient):
    r = client.post("/widgets", json={"name": "w", "count": 2})
    assert r.status_code == 201
    assert r.json() == {"name": "w", "count": 2, "tags": []}


def test_wrong_type_in_body_is_422_naming_the_field(client: TestClient):
    body = assert_problem(client.post("/widgets", json={"name": "w", "count": "many"}), 422)
    assert body["type"] == "/problems/validation-error"
    assert [e["field"] for e in body["errors"]] == ["count"]
    assert body["detail"].startswith("count: ")
    assert body["instance"] == "/widgets"


def test_nested_field_paths_are_dotted(client: TestClient):
    body = assert_problem(client.post("/widgets", json={"name": "w", "count": 1, "tags": ["ok", 5]}), 422)
    assert [e["field"] for e in body["errors"]] == ["tags.1"]


def test_missing_fields_are_all_listed(client: TestClient):
    body = assert_problem(client.post("/widgets", json={}), 422)
    assert sorted(e["field"] for e in body["errors"]) == ["count", "name"]
    assert all(e["reason"] for e in body["errors"])


def test_a_body_that_is_not_an_object_is_422(client: TestClient):
    body = assert_problem(client.post("/widgets", json=[1, 2]), 422)
    assert body["errors"]


def test_query_parameter_errors_are_prefixed(client: TestClient):
    body = assert_problem(client.get("/search", params={"limit": 0}), 422)
    assert [e["field"] for e in body["errors"]] == ["query.limit"]
    body = assert_problem(client.get("/search"), 422)
    assert [e["field"] for e in body["errors"]] == ["query.limit"]


def test_malformed_json_is_400(client: TestClient):
    r = client.post("/widgets", content=b'{"name": "w", "count": ', headers={"content-type": "application/json"})
    body = assert_problem(r, 400)
    assert body["type"] == "/problems/malformed-json"
    assert body["title"] == "Bad request"
    assert "JSON" in body["detail"]


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("body", "count"), "count"),
        (("body", "tags", 1), "tags.1"),
        (("body",), "body"),  # the whole body is at fault
        (("query", "limit"), "query.limit"),
        (("path", "id"), "path.id"),
        (("header", "if-match"), "header.if-match"),
        (("query",), "query"),
        (("other", "x"), "other.x"),
        ((), ""),
    ],
)
def test_field_path(loc: tuple, expected: str):
    assert _field_path(loc) == expected


@pytest.mark.parametrize(
    ("code", "slug"),
    [
        ("NotFound", "not-found"),
        ("InvalidTransition", "invalid-transition"),
        ("IdempotencyKeyReused", "idempotency-key-reused"),
        ("version_conflict", "version-conflict"),
        ("malformed-json", "malformed-json"),
        ("unauthenticated", "unauthenticated"),
    ],
)
def test_slug(code: str, slug: str):
    assert _slug(code) == slug


# --- everything else ---------------------------------------------------------------------


def test_unexpected_exception_is_500_without_leaking_the_message(client: TestClient, caplog):
    with caplog.at_level(logging.ERROR, logger="opsat.common.errors"):
        r = client.get("/boom")
    body = assert_problem(r, 500)
    assert SECRET not in r.text
    assert "RuntimeError" not in r.text
    assert body["type"] == "about:blank"
    assert body["title"] == "Internal error"
    assert body["instance"] == "/boom"
    assert any("/boom" in rec.getMessage() for rec in caplog.records)  # logged for operators


def test_unknown_route_is_404_problem(client: TestClient):
    body = assert_problem(client.get("/nowhere"), 404)
    assert body["type"] == "about:blank"


def test_wrong_method_is_405_problem(client: TestClient):
    r = client.delete("/widgets")
    assert_problem(r, 405)
    assert "POST" in r.headers.get("allow", "")


def test_http_exception_keeps_status_detail_and_headers(client: TestClient):
    r = client.get("/http")
    body = assert_problem(r, 429)
    assert body["detail"] == "slow down"
    assert body["title"] == "Too many requests"
    assert r.headers["retry-after"] == "3"


def test_unauthenticated_is_401_with_www_authenticate(client: TestClient):
    r = client.get("/unauthenticated")
    body = assert_problem(r, 401)
    assert body["type"] == "/problems/unauthenticated"
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_not_allowed_is_403(client: TestClient):
    body = assert_problem(client.get("/not-allowed"), 403)
    assert body["type"] == "/problems/forbidden"
    assert "agent" in body["detail"]
