"""The PostgreSQL event store keeps the event store contract (the same scenarios run against the
in-memory store in tests/unit/common/test_memstore.py), on a fresh database with the platform tables."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from opsat.common.db import create_engine
from opsat.common.eventstore import EventStore
from opsat.common.testing.helpers import platform_database
from opsat.common.testing.store_contract import SCENARIOS, Scenario, StoreFactory


@pytest_asyncio.fixture
async def postgres_store_factory(database_url: str) -> AsyncIterator[StoreFactory]:
    await platform_database(database_url)
    engine = create_engine(database_url, pool_size=4)
    try:
        yield lambda registry: EventStore(engine, registry)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_postgres_store_keeps_the_contract(scenario: Scenario, postgres_store_factory: StoreFactory) -> None:
    await scenario(postgres_store_factory)
