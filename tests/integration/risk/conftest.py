"""The risk service on the real stack: `risk` is the service built from its description by the kit's
`run_service` (migrated database, in-process app, `worker()` running its loops in this process)."""

from __future__ import annotations

import pytest_asyncio
from risk_harness import Risk

from opsat.risk.service import SERVICE


@pytest_asyncio.fixture(loop_scope="session")
async def risk(run_service) -> Risk:  # type: ignore[no-untyped-def]
    return await run_service(SERVICE, harness=Risk)
