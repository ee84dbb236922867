"""Shared fixtures for intake tests that run against the real PostgreSQL and Kafka.

`intake` is the service built from its description by the kit's `run_service`: a migrated database,
the API app (in-process over ASGI) and `worker()` running the worker's loops in this process, exactly
as `opsat-intake worker` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import jwt
import pytest
import pytest_asyncio

from opsat.common.db import asyncpg_dsn
from opsat.common.testing.service import ServiceHarness
from opsat.intake.service import SERVICE

STAFF_FIELDS = ("team", "customer_tier")  # staff set them; requesters may not


class Intake(ServiceHarness):
    _store: asyncpg.Connection | None = None

    async def event_count(self) -> int:
        """Rows in the event store, straight from PostgreSQL, on one connection kept for the test: the sweeps
        count before and after hundreds of requests."""
        if self._store is None:
            self._store = await asyncpg.connect(asyncpg_dsn(self.settings.database_url))
        return await self._store.fetchval("select count(*) from events")

    async def close_store(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None

    async def submit(self, headers: dict[str, str] | None = None, **overrides: object) -> str:
        """Submit as the token's holder; with a staff-only field, a desk agent submits on the holder's behalf."""
        headers = headers or self.token()
        if any(name in overrides for name in STAFF_FIELDS):
            holder = jwt.decode(headers["Authorization"].split()[1], options={"verify_signature": False})
            overrides = {"requester_id": holder["sub"], "organisation_id": holder["org"], **overrides}
            headers = self.token("desk-agent", "ops", "agent")
        body = {"kind": "incident", "channel": "portal", "title": "VPN down", "description": "cannot connect",
                "impact": 2, "urgency": 1, **overrides}
        r = await self.client.post("/api/v1/requests", json=body, headers=headers)
        assert r.status_code == 201, r.text
        return r.json()["request_id"]

    async def wait_for(self, request_id: str, version: int, headers: dict[str, str] | None = None,
                       timeout: float = 20.0) -> dict:
        """Poll the read model until the request reaches `version`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            r = await self.client.get(f"/api/v1/requests/{request_id}",
                                      headers=headers or self.token("agent-1", "ops", "agent"))
            if r.status_code == 200 and r.json()["version"] >= version:
                return r.json()
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"read model did not reach version {version}: {r.status_code} {r.text}")
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture(loop_scope="session")
async def intake(request: pytest.FixtureRequest, run_service) -> AsyncIterator[Intake]:  # type: ignore[no-untyped-def]
    """Overrides: `@pytest.mark.intake_settings(intake_policy={...})`."""
    marker = request.node.get_closest_marker("intake_settings")
    harness = await run_service(SERVICE, harness=Intake, **(marker.kwargs if marker else {}))
    try:
        yield harness
    finally:
        await harness.close_store()
