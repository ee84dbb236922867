"""The event store contract: scenarios that every store must pass, PostgreSQL and in-memory alike.

Each scenario is a plain async function taking a `StoreFactory` (registry -> a fresh, empty store)
and asserting. Tests run all of `SCENARIOS` against one store kind, e.g.

    @pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
    async def test_contract(scenario, store_factory): await scenario(store_factory)
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from opsat.common.commands import CommandHandler, CommandMeta
from opsat.common.domain import Actor, CommandContext, Conflict, DomainEvent, NotFound, PreconditionFailed, Role
from opsat.common.envelope import EventMetadata, EventRegistry, UnknownEventType
from opsat.common.eventstore import (
    AppendResult,
    ConcurrencyConflict,
    Idempotency,
    IdempotencyKeyReused,
    StreamsMoved,
    StreamStore,
)

StoreFactory = Callable[[EventRegistry], StreamStore]
Scenario = Callable[[StoreFactory], Awaitable[None]]


class Colour(str, enum.Enum):
    red = "red"
    blue = "blue"


class Opened(DomainEvent):
    event_type = "opsat.contract.counter.opened"
    limit: int


class Added(DomainEvent):
    event_type = "opsat.contract.counter.added"
    amount: int
    at: datetime | None = None
    share: Decimal | None = None
    colour: Colour | None = None


class Unregistered(DomainEvent):
    event_type = "opsat.contract.counter.unregistered"


class Unserialisable(DomainEvent):
    event_type = "opsat.contract.counter.unserialisable"
    value: Any


REGISTRY = EventRegistry("contract", [Opened, Added, Unserialisable])
META = EventMetadata(actor="u1", tenant="acme", correlation_id="c-1")


def _store(factory: StoreFactory) -> StreamStore:
    return factory(REGISTRY)


# --- a tiny aggregate for the command handler --------------------------------------------------


class OverLimit(Conflict):
    pass


@dataclass(frozen=True)
class Open:
    creates_stream: ClassVar[bool] = True

    counter_id: str
    limit: int


@dataclass(frozen=True)
class Add:
    counter_id: str
    amount: int


def evolve(state: dict[str, int] | None, event: DomainEvent) -> dict[str, int]:
    match event:
        case Opened(limit=limit):
            return {"limit": limit, "total": 0}
        case Added(amount=amount):
            assert state is not None
            return {**state, "total": state["total"] + amount}
    raise AssertionError(f"unexpected {event!r}")


class Counter:
    stream_type = "counter"
    id_field = "counter_id"
    commands = frozenset({Open, Add})
    evolve = staticmethod(evolve)

    def tenant(self, state: Any, command: Any, actor: Actor) -> str:
        return actor.organisation

    def decide(self, state: dict[str, int] | None, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        if isinstance(command, Open):
            return [Opened(limit=command.limit)]
        if state is None:
            raise Conflict("no such counter")
        if state["total"] + command.amount > state["limit"]:
            raise OverLimit(f"{state['total']} + {command.amount} is over {state['limit']}")
        return [Added(amount=command.amount)]


ACTOR = Actor(id="u1", organisation="acme", roles=frozenset({Role.agent}))


class CountingHandler(CommandHandler):
    """The shared handler over the store under test; counts how often the domain was asked."""

    def __init__(self, store: StreamStore) -> None:
        super().__init__("contract", store, Counter())  # type: ignore[arg-type]
        self.decided = 0
        decide = self.aggregate.decide

        def counted(*args: Any) -> list[DomainEvent]:
            self.decided += 1
            return decide(*args)

        self.aggregate.decide = counted  # type: ignore[method-assign]


def meta(key: str | None = None, fingerprint: Any = None, expected: int | None = None) -> CommandMeta:
    return CommandMeta(correlation_id="c-1", idempotency_key=key, fingerprint=fingerprint, expected_version=expected)


def key_of(key: str, command: Any, fingerprint: Any, actor: Actor = ACTOR) -> Idempotency:
    """The key the handler stores for `command` sent with Idempotency-Key `key`."""
    return Idempotency.for_request(key, actor, type(command).__name__, fingerprint)


# --- scenarios ------------------------------------------------------------------------------------


async def appended_events_load_in_version_order(factory: StoreFactory) -> None:
    store = _store(factory)
    first = await store.append("s1", "counter", 0, [Opened(limit=10), Added(amount=1)], META)
    other = await store.append("s2", "counter", 0, [Opened(limit=5)], META)
    second = await store.append("s1", "counter", 2, [Added(amount=2)], META)
    assert (first.version, other.version, second.version) == (2, 1, 3)
    assert not (first.replayed or other.replayed or second.replayed)

    loaded = await store.load("s1")
    assert [r.version for r in loaded] == [1, 2, 3]
    assert [r.event for r in loaded] == [Opened(limit=10), Added(amount=1), Added(amount=2)]
    assert {(r.stream_id, r.stream_type) for r in loaded} == {("s1", "counter")}
    assert [r.event_id for r in loaded] == [*first.event_ids, *second.event_ids]
    assert len(set(first.event_ids + other.event_ids + second.event_ids)) == 4
    assert all(r.metadata == {"actor": "u1", "tenant": "acme", "correlation_id": "c-1"} for r in loaded)
    assert all(r.recorded_at.tzinfo is not None for r in loaded)
    # Positions increase across streams in append order; a result names its last event's position.
    [s2] = await store.load("s2")
    positions = [loaded[0].position, loaded[1].position, s2.position, loaded[2].position]
    assert positions == sorted(positions) and len(set(positions)) == 4
    assert (first.position, other.position, second.position) == (loaded[1].position, s2.position, loaded[2].position)
    assert await store.load("nothing-here") == []


async def a_stale_expected_version_is_a_conflict(factory: StoreFactory) -> None:
    store = _store(factory)
    await store.append("s1", "counter", 0, [Opened(limit=10), Added(amount=1)], META)
    for stale in (0, 1):
        with pytest.raises(ConcurrencyConflict) as raised:
            await store.append("s1", "counter", stale, [Added(amount=5)], META)
        assert raised.value.code == "version_conflict"
    assert [r.version for r in await store.load("s1")] == [1, 2]
    assert (await store.append("s1", "counter", 2, [Added(amount=5)], META)).version == 3


async def concurrent_appends_at_one_version_let_exactly_one_win(factory: StoreFactory) -> None:
    store = _store(factory)
    await store.append("s1", "counter", 0, [Opened(limit=10)], META)
    outcomes = await asyncio.gather(
        *(store.append("s1", "counter", 1, [Added(amount=n)], META) for n in (1, 2)), return_exceptions=True
    )
    [won] = [o for o in outcomes if isinstance(o, AppendResult)]
    [lost] = [o for o in outcomes if not isinstance(o, AppendResult)]
    assert isinstance(lost, ConcurrencyConflict)
    loaded = await store.load("s1")
    assert [r.version for r in loaded] == [1, 2]
    assert loaded[1].event_id == won.event_ids[0]


async def a_multi_event_append_is_all_or_nothing(factory: StoreFactory) -> None:
    store = _store(factory)
    await store.append("s1", "counter", 0, [Opened(limit=10)], META)
    # Versions 1-3: only version 1 is taken, yet none of the three may be written.
    with pytest.raises(ConcurrencyConflict):
        await store.append("s1", "counter", 0, [Opened(limit=1), Added(amount=1), Added(amount=2)], META)
    # The second event cannot be serialised: the first must not be written either.
    with pytest.raises(Exception, match="[Ss]erializ"):
        await store.append("s1", "counter", 1, [Added(amount=1), Unserialisable(value=object())], META)
    with pytest.raises(ValueError, match="at least one event"):
        await store.append("s1", "counter", 1, [], META)
    assert [r.event for r in await store.load("s1")] == [Opened(limit=10)]
    assert await store.stream_version("s1") == 1
    batch = await store.append("s1", "counter", 1, [Added(amount=1), Added(amount=2), Added(amount=3)], META)
    loaded = await store.load("s1")
    assert [r.version for r in loaded] == [1, 2, 3, 4] and batch.version == 4
    assert batch.position == loaded[-1].position


async def stream_version_counts_the_events_of_one_stream(factory: StoreFactory) -> None:
    store = _store(factory)
    assert await store.stream_version("s1") == 0
    await store.append("s1", "counter", 0, [Opened(limit=10), Added(amount=1)], META)
    await store.append("s2", "counter", 0, [Opened(limit=10)], META)
    await store.append("s1", "counter", 2, [Added(amount=1)], META)
    assert (await store.stream_version("s1"), await store.stream_version("s2")) == (3, 1)


async def events_read_back_through_json_and_the_registry(factory: StoreFactory) -> None:
    store = _store(factory)
    at = datetime(2026, 10, 10, 16, 0, tzinfo=UTC) + timedelta(microseconds=123)
    sent = Added(amount=3, at=at, share=Decimal("0.35"), colour=Colour.blue)
    await store.append("s1", "counter", 0, [sent], META)
    [loaded] = await store.load("s1")
    assert loaded.event == sent and loaded.event is not sent
    assert loaded.event.at == at and loaded.event.colour is Colour.blue
    # A type the registry does not know is stored, but cannot be read back.
    await store.append("s2", "counter", 0, [Unregistered()], META)
    with pytest.raises(UnknownEventType):
        await store.load("s2")


async def an_idempotency_key_repeat_returns_the_first_result(factory: StoreFactory) -> None:
    store = _store(factory)
    handler = CountingHandler(store)
    await store.append("c1", "counter", 0, [Opened(limit=10)], META)
    command = Add("c1", 2)
    key = key_of("k1", command, {"amount": 2})
    assert await store.idempotent_result(key) is None
    first = await handler.execute(command, ACTOR, meta("k1", {"amount": 2}))
    assert not first.replayed and handler.decided == 1
    again = await handler.execute(command, ACTOR, meta("k1", {"amount": 2}))
    assert again == AppendResult(first.stream_id, first.version, first.position, first.event_ids, replayed=True)
    assert handler.decided == 1  # the repeat never reached the domain
    assert await store.idempotent_result(key) == again
    assert await store.stream_version("c1") == 2
    # Two requests with one key racing past the check: the loser's append (here onto a freshly
    # generated stream id, as a create does) returns the winner's result and writes nothing.
    raced = await store.append("c2", "counter", 0, [Opened(limit=1)], META, key)
    assert raced == again
    assert await store.load("c2") == []


async def an_idempotency_key_reused_for_another_request_is_refused(factory: StoreFactory) -> None:
    store = _store(factory)
    handler = CountingHandler(store)
    await store.append("c1", "counter", 0, [Opened(limit=10)], META)
    await handler.execute(Add("c1", 2), ACTOR, meta("k1", {"amount": 2}))
    with pytest.raises(IdempotencyKeyReused) as raised:
        await handler.execute(Add("c1", 3), ACTOR, meta("k1", {"amount": 3}))
    assert raised.value.field == "Idempotency-Key"
    other = key_of("k1", Add("c1", 3), {"amount": 3})
    with pytest.raises(IdempotencyKeyReused):
        await store.idempotent_result(other)
    with pytest.raises(IdempotencyKeyReused):
        await store.append("c2", "counter", 0, [Opened(limit=1)], META, other)
    assert await store.stream_version("c1") == 2
    assert await store.load("c2") == []


async def idempotency_keys_of_different_actors_are_independent(factory: StoreFactory) -> None:
    store = _store(factory)
    mine = Idempotency.for_request("k1", ACTOR, "open", {"limit": 1})
    theirs = Idempotency.for_request("k1", replace(ACTOR, id="u2"), "open", {"limit": 1})
    elsewhere = Idempotency.for_request("k1", replace(ACTOR, organisation="evil"), "open", {"limit": 1})
    a = await store.append("c1", "counter", 0, [Opened(limit=1)], META, mine)
    b = await store.append("c2", "counter", 0, [Opened(limit=1)], META, theirs)
    c = await store.append("c3", "counter", 0, [Opened(limit=1)], META, elsewhere)  # same subject, other org
    assert not a.replayed and not b.replayed and not c.replayed
    assert await store.idempotent_result(mine) == replace(a, replayed=True)
    assert await store.idempotent_result(theirs) == replace(b, replayed=True)
    assert await store.idempotent_result(elsewhere) == replace(c, replayed=True)
    assert await store.stream_version("c1") == await store.stream_version("c2") == await store.stream_version("c3") == 1


async def the_command_handler_loads_decides_and_appends(factory: StoreFactory) -> None:
    store = _store(factory)
    handler = CountingHandler(store)
    with pytest.raises(NotFound, match="counter 'c1' not found"):  # the handler: no stream, nothing to decide on
        await handler.execute(Add("c1", 1), ACTOR, meta())
    created = await handler.execute(Open("c1", limit=5), ACTOR, meta())
    assert created.version == 1
    caused = CommandMeta(correlation_id="c-9", causation_id="e-1", traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    await handler.execute(Add("c1", 3), Actor(id="u2", organisation="acme"), caused)
    with pytest.raises(OverLimit):  # the domain refuses: nothing is appended
        await handler.execute(Add("c1", 3), ACTOR, meta())
    with pytest.raises(PreconditionFailed):  # If-Match with an old version
        await handler.execute(Add("c1", 1), ACTOR, meta(expected=1))
    done = await handler.execute(Add("c1", 2), ACTOR, meta(expected=2))
    loaded = await store.load("c1")
    assert done.version == 3 and [r.event for r in loaded] == [Opened(limit=5), Added(amount=3), Added(amount=2)]
    assert loaded[1].metadata == {"actor": "u2", "tenant": "acme", "correlation_id": "c-9", "causation_id": "e-1",
                                  "traceparent": caused.traceparent}
    # A create on a taken id is still refused by the store (a create skips the load).
    with pytest.raises(ConcurrencyConflict):
        await handler.execute(Open("c1", limit=5), ACTOR, meta())


@asynccontextmanager
async def _transaction(store: StreamStore) -> AsyncIterator[Any]:
    """A transaction of the store's database to write a command batch in (the memory store has none)."""
    engine = getattr(store, "engine", None)
    if engine is None:
        yield None
        return
    async with engine.begin() as conn:
        yield conn


async def a_command_batch_writes_its_commands_together_or_not_at_all(factory: StoreFactory) -> None:
    store = _store(factory)
    handler = CountingHandler(store)
    await handler.execute(Open("c1", limit=5), ACTOR, meta())
    async with _transaction(store) as conn:
        batch = handler.batch(conn)
        opened = await batch.execute(Open("c2", limit=9), ACTOR, meta())
        added = await batch.execute(Add("c2", 4), ACTOR, CommandMeta(correlation_id="c-2", causation_id="e-2"))
        refused = await batch.execute(Add("c1", 6), ACTOR, meta())  # over the limit: its own refusal only
        taken = await batch.execute(Open("c1", limit=1), ACTOR, meta())  # the id exists
        filled = await batch.execute(Add("c1", 5), ACTOR, meta())
        positions = await batch.commit()
    assert isinstance(refused, OverLimit) and isinstance(taken, ConcurrencyConflict)
    assert isinstance(opened, AppendResult) and isinstance(added, AppendResult) and isinstance(filled, AppendResult)
    c2 = await store.load("c2")
    assert [r.event for r in c2] == [Opened(limit=9), Added(amount=4)] and added.version == 2
    assert c2[1].metadata["causation_id"] == "e-2" and [r.event_id for r in c2] == [*opened.event_ids,
                                                                                     *added.event_ids]
    assert [r.event for r in await store.load("c1")] == [Opened(limit=5), Added(amount=5)]
    assert set(positions) == {*opened.event_ids, *added.event_ids, *filled.event_ids}
    assert sorted(positions[e] for e in (*opened.event_ids, *added.event_ids)) == [r.position for r in c2]
    # Another writer appends to a stream of the batch after the batch read it: the batch is refused as a whole
    # (a transient fault: its caller runs it again on the new state) and writes nothing.
    with pytest.raises(StreamsMoved):
        async with _transaction(store) as conn:
            batch = handler.batch(conn)
            await batch.execute(Add("c2", 1), ACTOR, meta())
            await handler.execute(Add("c2", 2), ACTOR, meta())
            await batch.execute(Open("c3", limit=1), ACTOR, meta())
            await batch.commit()
    assert await store.stream_version("c3") == 0
    assert [r.event for r in await store.load("c2")][-1] == Added(amount=2) and await store.stream_version("c2") == 3


SCENARIOS: list[Scenario] = [
    appended_events_load_in_version_order,
    a_stale_expected_version_is_a_conflict,
    concurrent_appends_at_one_version_let_exactly_one_win,
    a_multi_event_append_is_all_or_nothing,
    stream_version_counts_the_events_of_one_stream,
    events_read_back_through_json_and_the_registry,
    an_idempotency_key_repeat_returns_the_first_result,
    an_idempotency_key_reused_for_another_request_is_refused,
    idempotency_keys_of_different_actors_are_independent,
    the_command_handler_loads_decides_and_appends,
    a_command_batch_writes_its_commands_together_or_not_at_all,
]
