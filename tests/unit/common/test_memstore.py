"""The in-memory event store keeps the event store contract (the same scenarios run against
PostgreSQL in tests/integration/common/test_eventstore_contract.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from opsat.common.memstore import InMemoryEventStore
from opsat.common.testing.store_contract import META, REGISTRY, SCENARIOS, Opened, Scenario


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_in_memory_store_keeps_the_contract(scenario: Scenario) -> None:
    await scenario(InMemoryEventStore)


async def test_recorded_at_comes_from_the_store_clock_once_per_append() -> None:
    at = datetime(2026, 10, 10, 8, 0, tzinfo=UTC)
    store = InMemoryEventStore(REGISTRY, clock=lambda: at)
    await store.append("s1", "counter", 0, [Opened(limit=1), Opened(limit=2)], META)
    assert [r.recorded_at for r in await store.load("s1")] == [at, at]


async def test_stores_share_nothing() -> None:
    one, two = InMemoryEventStore(REGISTRY), InMemoryEventStore(REGISTRY)
    await one.append("s1", "counter", 0, [Opened(limit=1)], META)
    assert await two.load("s1") == []
    assert (await two.append("s1", "counter", 0, [Opened(limit=1)], META)).position == 1
