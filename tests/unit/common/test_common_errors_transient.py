"""Transient faults answer 503 + Retry-After; other failures a 500. Both are answered by a handler of their
own (not re-raised to the server, which would drop the client's keep-alive connection)."""

from __future__ import annotations

import asyncpg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import exc as sa_exc

from opsat.common.errors import PROBLEM_JSON, install_error_handlers

FAILURES = {
    "raw-closed": asyncpg.InterfaceError("connection is closed"),
    "refused": ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
    "pool-timeout": sa_exc.TimeoutError("QueuePool limit of size 5 overflow 0 reached"),
    "serialization": sa_exc.DBAPIError("update t", {}, asyncpg.SerializationError("could not serialize")),
    "shutdown": asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    "grouped": ExceptionGroup("task group", [ConnectionResetError(104, "reset by peer")]),
    "constraint": sa_exc.IntegrityError("insert", {}, asyncpg.UniqueViolationError("duplicate key")),
    "raw-bug": asyncpg.InterfaceError("the server expects 2 arguments for this query, 1 was passed"),
    "bug": RuntimeError("a handler's bug"),
}


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/fail/{name}")
    async def fail(name: str) -> None:
        raise FAILURES[name]

    return TestClient(app, raise_server_exceptions=True)  # a re-raised error would fail the test


@pytest.mark.parametrize("name", ["raw-closed", "refused", "pool-timeout", "serialization", "shutdown"])
def test_transient_faults_answer_503_with_retry_after(client: TestClient, name: str) -> None:
    r = client.get(f"/fail/{name}")
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["type"] == "/problems/database-unavailable"


@pytest.mark.parametrize("name", ["constraint", "raw-bug"])
def test_other_database_errors_are_500_answered_not_raised(client: TestClient, name: str) -> None:
    r = client.get(f"/fail/{name}")
    assert r.status_code == 500 and "retry-after" not in r.headers
    assert "duplicate key" not in r.text and "expects" not in r.text  # no internals in the answer


def test_a_transient_fault_inside_an_exception_group_is_503() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/grouped")
    async def grouped() -> None:
        raise FAILURES["grouped"]

    r = TestClient(app, raise_server_exceptions=False).get("/grouped")
    assert r.status_code == 503 and r.headers["retry-after"]
