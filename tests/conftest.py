"""Shared fixtures for intake tests that run against the real PostgreSQL and Kafka.

`intake` gives a migrated database, the API app (in-process over ASGI) and a way to run the
worker's loops (relay, projections, deadlines) in this process, exactly as `opsat-intake worker` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
import pytest_asyncio

from opsat.common.auth import mint_token
from opsat.common.worker import run_loops
from opsat.intake.cli import MIGRATIONS
from opsat.intake.main import create_app
from opsat.intake.settings import IntakeSettings


@dataclass
class Intake:
    settings: IntakeSettings
    client: httpx.AsyncClient
    _workers: list[tuple[asyncio.Event, asyncio.Task]] = field(default_factory=list)

    def token(self, sub: str = "u-req", org: str = "acme", roles: str = "requester") -> dict[str, str]:
        return {"Authorization": "Bearer " + mint_token(self.settings, sub=sub, org=org, roles=roles.split(","))}

    @asynccontextmanager
    async def worker(self, only: tuple[str, ...] | None = None) -> AsyncIterator[None]:
        """Run the worker's loops (all, or those whose names start with one of `only`) until the block ends."""
        from opsat.intake.worker import build_loops, ensure_intake_topics

        await ensure_intake_topics(self.settings)
        loops = [(n, loop) for n, loop in build_loops(self.settings) if only is None or n.startswith(only)]
        stop = asyncio.Event()
        task = asyncio.create_task(run_loops(loops, stop))
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=30)

    async def submit(self, headers: dict[str, str] | None = None, **overrides: object) -> str:
        body = {"kind": "incident", "channel": "portal", "title": "VPN down", "description": "cannot connect",
                "impact": 2, "urgency": 1, **overrides}
        r = await self.client.post("/api/v1/requests", json=body, headers=headers or self.token())
        assert r.status_code == 201, r.text
        return r.json()["request_id"]

    async def wait_for(self, request_id: str, version: int, headers: dict[str, str] | None = None,
                       timeout: float = 20.0) -> dict:
        """Poll the read model until the request reaches `version`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            r = await self.client.get(f"/api/v1/requests/{request_id}", headers=headers or self.token("agent-1", "ops", "agent"))
            if r.status_code == 200 and r.json()["version"] >= version:
                return r.json()
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"read model did not reach version {version}: {r.status_code} {r.text}")
            await asyncio.sleep(0.05)


def intake_settings(database_url: str, kafka_bootstrap: str, namespace: str) -> IntakeSettings:
    return IntakeSettings(database_url=database_url, kafka_bootstrap=kafka_bootstrap, topic_namespace=namespace,
                          relay_poll_interval_s=0.2, deadline_poll_interval_s=0.2, kafka_request_timeout_ms=3000,
                          database_pool_size=5, log_json=False, environment="test")


@pytest_asyncio.fixture(loop_scope="session")
async def intake(request: pytest.FixtureRequest, database_url: str, kafka_bootstrap: str,
                 topic_namespace: str) -> AsyncIterator[Intake]:
    """Overrides: `@pytest.mark.intake_settings(intake_policy={...})`."""
    from opsat.common.migrations import upgrade

    settings = intake_settings(database_url, kafka_bootstrap, topic_namespace)
    marker = request.node.get_closest_marker("intake_settings")
    if marker is not None:
        settings = settings.model_copy(update=marker.kwargs)
    await asyncio.to_thread(upgrade, database_url, MIGRATIONS)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as client:
            yield Intake(settings=settings, client=client)

