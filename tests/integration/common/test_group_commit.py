"""Group commit on real PostgreSQL: appends that arrive together share one statement (one transaction, seen as one
`xmin` on their rows), and each keeps its own expected-version check, Idempotency-Key and result."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import event

from opsat.common.db import asyncpg_dsn, create_engine
from opsat.common.domain import DomainEvent
from opsat.common.envelope import EventMetadata, EventRegistry
from opsat.common.eventstore import AppendResult, ConcurrencyConflict, EventStore, Idempotency
from opsat.common.testing.helpers import platform_database
from opsat.common.testing.store_contract import ACTOR, Added, Opened


class Noted(DomainEvent):
    event_type = "opsat.groupcommit.noted"
    note: str


REGISTRY = EventRegistry("groupcommit", [Opened, Added, Noted])
META = EventMetadata(actor="u1", tenant="acme", correlation_id="c-1")


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    await platform_database(database_url)
    engine = create_engine(database_url, pool_size=4)
    try:
        yield EventStore(engine, REGISTRY)
    finally:
        await engine.dispose()


async def _transactions(store: EventStore, stream_ids: list[str]) -> int:
    """How many transactions wrote the events of these streams."""
    conn = await asyncpg.connect(asyncpg_dsn(store.engine.url.render_as_string(hide_password=False)))
    try:
        return await conn.fetchval("select count(distinct xmin::text) from events where stream_id = any($1)",
                                   stream_ids)
    finally:
        await conn.close()


async def _outbox(store: EventStore) -> set[int]:
    conn = await asyncpg.connect(asyncpg_dsn(store.engine.url.render_as_string(hide_password=False)))
    try:
        return {r[0] for r in await conn.fetch("select position from outbox")}
    finally:
        await conn.close()


async def test_concurrent_appends_to_different_streams_share_one_transaction(store: EventStore) -> None:
    streams = [f"s{n}" for n in range(12)]
    results = await asyncio.gather(*(store.append(s, "counter", 0, [Opened(limit=n), Added(amount=1)], META)
                                     for n, s in enumerate(streams)))
    assert await _transactions(store, streams) == 1
    assert [r.stream_id for r in results] == streams and all(r.version == 2 for r in results)
    for n, (stream, result) in enumerate(zip(streams, results)):
        loaded = await store.load(stream)
        assert [r.event for r in loaded] == [Opened(limit=n), Added(amount=1)]
        assert [r.event_id for r in loaded] == list(result.event_ids)
        assert result.position == loaded[-1].position  # its own last event, not the group's
        assert loaded[0].metadata == META.as_dict()
    assert len({r.position for r in results}) == len(streams)
    assert await _outbox(store) == {e.position for s in streams for e in await store.load(s)}


async def test_a_conflict_in_a_group_fails_only_its_own_command(store: EventStore) -> None:
    await store.append("taken", "counter", 0, [Opened(limit=1)], META)
    key = Idempotency.for_request("k-stale", ACTOR, "Add", {"amount": 3})
    outcomes = await asyncio.gather(
        store.append("taken", "counter", 0, [Added(amount=3)], META, key),  # stale: the stream is at 1
        store.append("fresh-a", "counter", 0, [Opened(limit=2)], META),
        store.append("taken", "counter", 1, [Added(amount=4)], META),  # same stream: the next group, and it wins
        store.append("fresh-b", "counter", 0, [Opened(limit=3)], META),
        store.append("twice", "counter", 0, [Opened(limit=5)], META),
        store.append("twice", "counter", 0, [Opened(limit=6)], META),  # one of these two loses
        return_exceptions=True)
    stale, fresh_a, taken, fresh_b, twice_1, twice_2 = outcomes
    assert isinstance(stale, ConcurrencyConflict) and stale.code == "version_conflict"
    assert await store.idempotent_result(key) is None  # a conflicting command claims no key
    assert isinstance(fresh_a, AppendResult) and isinstance(fresh_b, AppendResult)
    assert isinstance(taken, AppendResult) and taken.version == 2
    assert [e.event for e in await store.load("taken")] == [Opened(limit=1), Added(amount=4)]
    assert isinstance(twice_1, AppendResult) and isinstance(twice_2, ConcurrencyConflict)
    assert [e.event for e in await store.load("twice")] == [Opened(limit=5)]
    assert await _transactions(store, ["fresh-a", "fresh-b", "twice"]) == 1


async def test_idempotency_keys_in_one_group(store: EventStore) -> None:
    earlier_key = Idempotency.for_request("k-earlier", ACTOR, "Open", {"limit": 1})
    earlier = await store.append("earlier", "counter", 0, [Opened(limit=1)], META, earlier_key)
    k1 = Idempotency.for_request("k1", ACTOR, "Open", {"limit": 1})
    k2 = Idempotency.for_request("k2", ACTOR, "Open", {"limit": 2})
    first, repeat, second, late = await asyncio.gather(
        store.append("g1", "counter", 0, [Opened(limit=1), Added(amount=1)], META, k1),
        store.append("g1-retry", "counter", 0, [Opened(limit=1), Added(amount=1)], META, k1),  # same key: repeat
        store.append("g2", "counter", 0, [Opened(limit=2)], META, k2),
        store.append("earlier-retry", "counter", 0, [Opened(limit=1)], META, earlier_key))  # key already held
    assert not first.replayed and not second.replayed
    assert await _transactions(store, ["g1", "g2"]) == 1
    assert repeat == AppendResult(first.stream_id, first.version, first.position, first.event_ids, replayed=True)
    assert late == AppendResult(earlier.stream_id, earlier.version, earlier.position, earlier.event_ids,
                                replayed=True)
    assert await store.load("g1-retry") == [] and await store.load("earlier-retry") == []
    # the key rows written by the group answer with their command's position, read from its last event
    assert await store.idempotent_result(k1) == repeat
    assert await store.idempotent_result(k2) == AppendResult("g2", 1, second.position, second.event_ids,
                                                             replayed=True)
    assert second.position == (await store.load("g2"))[-1].position


async def test_a_failure_mid_group_fails_only_its_own_command(store: EventStore) -> None:
    outcomes = await asyncio.gather(
        store.append("ok-1", "counter", 0, [Opened(limit=1)], META),
        store.append("bad", "counter", 0, [Noted(note="nul \x00 is not storable in jsonb")], META),
        store.append("ok-2", "counter", 0, [Opened(limit=2)], META),
        return_exceptions=True)
    ok_1, bad, ok_2 = outcomes
    assert isinstance(bad, asyncpg.PostgresError)
    assert isinstance(ok_1, AppendResult) and isinstance(ok_2, AppendResult)
    assert [e.event for e in await store.load("ok-1")] == [Opened(limit=1)]
    assert [e.event for e in await store.load("ok-2")] == [Opened(limit=2)]
    assert await store.load("bad") == []
    assert await _outbox(store) == {ok_1.position, ok_2.position}


@pytest.mark.parametrize("group_commit", [True, False])
async def test_a_single_append_needs_no_group(database_url: str, group_commit: bool) -> None:
    await platform_database(database_url)
    engine = create_engine(database_url, pool_size=2)
    try:
        store = EventStore(engine, REGISTRY, group_commit=group_commit)
        sent: list[str] = []

        @event.listens_for(engine.sync_engine, "connect")
        def log_queries(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.driver_connection.add_query_logger(lambda record: sent.append(record.query.strip()))

        # The connection's first statements introspect types (asyncpg): warm it with the same kinds of append.
        await store.append("warm", "counter", 0, [Opened(limit=1)], META)
        await store.append("warm", "counter", 1, [Added(amount=1)], META, Idempotency.for_request("k-0", ACTOR, "add"))
        sent.clear()
        result = await store.append("alone", "counter", 0, [Opened(limit=1)], META)
        # One statement, its own transaction: no BEGIN and COMMIT around it (two round trips more).
        assert len(sent) == 1 and sent[0].startswith("with appended as"), sent
        assert (result.version, result.replayed) == (1, False)
        assert [e.event_id for e in await store.load("alone")] == list(result.event_ids)
        sent.clear()
        keyed = await store.append("alone", "counter", 1, [Added(amount=1)], META,
                                   Idempotency.for_request("k-1", ACTOR, "add"))
        assert keyed.version == 2 and len(sent) == (1 if group_commit else 4), sent  # BEGIN, events, key, COMMIT
    finally:
        await engine.dispose()
