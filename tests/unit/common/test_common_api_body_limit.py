"""api.HttpMiddleware: 413 problem+json for bodies over the limit, announced or streamed."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel

from opsat.common.api import HttpMiddleware
from opsat.common.errors import PROBLEM_JSON, install_error_handlers

LIMIT = 1024


class Note(BaseModel):
    text: str


def make_app() -> FastAPI:
    """Like `create_service_app`: error handlers installed, the limit added as middleware."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/raw")
    async def raw(request: Request) -> dict:
        return {"received": len(await request.body())}

    @app.post("/notes")
    async def notes(note: Note) -> dict:
        return {"received": len(note.text)}

    app.add_middleware(HttpMiddleware, service="test", max_bytes=LIMIT)
    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(make_app(), raise_server_exceptions=False)


def chunks(total: int, size: int = 256) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield b"x" * n
        sent += n


def json_chunks(text_len: int) -> Iterator[bytes]:
    body = json.dumps({"text": "x" * text_len}).encode()
    for i in range(0, len(body), 200):
        yield body[i:i + 200]


def assert_413(response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == 413
    assert body["type"] == "/problems/body-too-large"
    assert body["title"] == "Request body too large"
    assert str(LIMIT) in body["detail"]


# --- announced by Content-Length ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/raw", "/notes"])
def test_content_length_over_the_limit_is_413(client: TestClient, path: str):
    assert_413(client.post(path, content=b"x" * (LIMIT + 1)))


def test_body_exactly_at_the_limit_passes(client: TestClient):
    r = client.post("/raw", content=b"x" * LIMIT)
    assert r.status_code == 200
    assert r.json() == {"received": LIMIT}


def test_small_json_body_passes(client: TestClient):
    r = client.post("/notes", json={"text": "hello"})
    assert r.status_code == 200
    assert r.json() == {"received": 5}


def test_get_without_body_passes():
    app = make_app()

    @app.get("/ping")
    async def ping() -> dict:
        return {"ok": True}

    assert TestClient(app).get("/ping").json() == {"ok": True}


# --- streamed without Content-Length -----------------------------------------------------


def test_chunked_body_under_the_limit_passes(client: TestClient):
    r = client.post("/raw", content=chunks(LIMIT - 10))
    assert r.status_code == 200
    assert r.json() == {"received": LIMIT - 10}


def test_chunked_body_over_the_limit_is_413(client: TestClient):
    assert_413(client.post("/raw", content=chunks(LIMIT * 4)))


def test_chunked_body_over_the_limit_for_a_body_model_route_is_413(client: TestClient):
    # Every service route takes a pydantic body model, so this is the case that matters.
    assert_413(client.post("/notes", content=json_chunks(LIMIT * 4), headers={"content-type": "application/json"}))


# --- at the ASGI level (headers an HTTP client would not send) ---------------------------


async def call(middleware: HttpMiddleware, headers: list[tuple[bytes, bytes]],
               bodies: list[bytes]) -> list[dict]:
    messages = [{"type": "http.request", "body": b, "more_body": i < len(bodies) - 1} for i, b in enumerate(bodies)]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/raw", "raw_path": b"/raw", "query_string": b"",
             "headers": headers, "http_version": "1.1", "scheme": "http", "server": ("test", 80),
             "client": ("test", 1), "root_path": ""}
    await middleware(scope, receive, send)
    return sent


def inner_app_recorder():
    calls: list[bytes] = []

    async def app(scope: dict, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        calls.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app, calls


def status_of(sent: list[dict]) -> int:
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def body_of(sent: list[dict]) -> dict:
    return json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


@pytest.mark.parametrize("length", [b"abc", b"-1", b"1e3", b"", b" 10", b"0x10"])
async def test_non_numeric_content_length_is_rejected_before_the_app(length: bytes):
    app, calls = inner_app_recorder()
    sent = await call(HttpMiddleware(app, "test", LIMIT), [(b"content-length", length)], [b"x"])
    assert calls == []  # the app never ran
    assert status_of(sent) == 413
    assert body_of(sent)["type"] == "/problems/body-too-large"
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert (b"content-type", PROBLEM_JSON.encode()) in start["headers"]


async def test_a_lying_content_length_is_caught_while_streaming():
    app, calls = inner_app_recorder()
    sent = await call(HttpMiddleware(app, "test", LIMIT), [(b"content-length", b"10")], [b"x" * 600, b"x" * 600])
    assert calls == []
    assert status_of(sent) == 413


async def test_streamed_body_at_the_limit_reaches_the_app():
    app, calls = inner_app_recorder()
    sent = await call(HttpMiddleware(app, "test", LIMIT), [], [b"x" * 512, b"x" * 512])
    assert status_of(sent) == 200
    assert calls == [b"x" * LIMIT]


async def test_non_http_scopes_pass_through():
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(scope["type"])

    await HttpMiddleware(app, "test", LIMIT)({"type": "lifespan"}, None, None)
    assert seen == ["lifespan"]
