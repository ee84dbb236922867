"""A service under test, built from its description: migrated database, in-process app, worker loops.

`run_service(SERVICE, **settings)` (a fixture of the pytest plugin) gives each service its own fresh
database and the test's topic namespace, so services started in one test read each other's topics.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from opsat.common.auth import mint_token
from opsat.common.migrations import upgrade
from opsat.common.service import Service
from opsat.common.settings import ServiceSettings
from opsat.common.worker import run_loops

TEST_SIGNING_KEY = secrets.token_hex(32)  # per test run: nothing outside it can mint a token


@dataclass
class ServiceHarness:
    service: Service
    settings: ServiceSettings
    client: httpx.AsyncClient

    def token(self, sub: str = "u-req", org: str = "acme", roles: str = "requester") -> dict[str, str]:
        return {"Authorization": "Bearer " + mint_token(self.settings, sub=sub, org=org, roles=roles.split(","))}

    @asynccontextmanager
    async def worker(self, only: tuple[str, ...] | None = None) -> AsyncIterator[None]:
        """Run the worker's loops (all, or those whose names start with one of `only`) until the block ends."""
        await self.service.ensure_topics(self.settings)
        loops = [(n, loop) for n, loop in self.service.build_loops(self.settings)
                 if only is None or n.startswith(only)]
        stop = asyncio.Event()
        task = asyncio.create_task(run_loops(loops, stop))
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=30)


def settings_for_tests(service: Service, database_url: str, kafka_bootstrap: str, namespace: str,
                       **overrides: Any) -> ServiceSettings:
    """Fast polling, small pools, readable logs, dev-mode tokens signed with a key of this run, and `ops` as the
    provider organisation (with `monitoring` a service account for every organisation)."""
    values = dict(database_url=database_url, kafka_bootstrap=kafka_bootstrap, topic_namespace=namespace,
                  relay_poll_interval_s=0.2, deadline_poll_interval_s=0.2, kafka_request_timeout_ms=3000,
                  relay_delivery_timeout_s=3.0,
                  database_pool_size=5, log_json=False, environment="test", auth_mode="dev",
                  auth_dev_key=TEST_SIGNING_KEY, provider_organisations=["ops"],
                  service_accounts={"monitoring": ["*"]})
    return service.settings(**{**values, **overrides})


@asynccontextmanager
async def running(service: Service, settings: ServiceSettings,
                  harness: type[ServiceHarness] = ServiceHarness) -> AsyncIterator[ServiceHarness]:
    await asyncio.to_thread(upgrade, settings.database_url, service.migrations)
    app = service.create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{service.name}") as client:
            yield harness(service=service, settings=settings, client=client)
