"""The append-only event store in PostgreSQL.

`append` writes all events of one command in one transaction together with their outbox rows
(and the idempotency key, if any); `unique (stream_id, version)` turns a concurrent write into
`ConcurrencyConflict`. Commands run against any `StreamStore` (this one, or
`opsat.common.memstore.InMemoryEventStore` in unit tests) through `opsat.common.commands.CommandHandler`.

An Idempotency-Key belongs to its caller, (issuer, organisation, subject): the same key from anyone else
is another request. Its result is kept for the retention the store is given; older keys are expired
(ignored, replaced, and deleted by `purge_idempotency_keys`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Collection, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, Protocol, TypeVar

import asyncpg
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from opsat.common.domain import Actor, Conflict, DomainEvent, InvalidInput
from opsat.common.envelope import EventMetadata, EventRegistry
from opsat.common.faults import Transient
from opsat.common.ids import new_id

S = TypeVar("S")


class ConcurrencyConflict(Conflict):
    """Someone else appended to the stream since it was read (HTTP 409; retry with the new version)."""


class StreamsMoved(Transient):
    """Another writer appended to a stream of a batch written in the caller's transaction: the transaction is
    lost; run it again (its commands are decided again on the new state)."""


class IdempotencyKeyReused(InvalidInput):
    """The same Idempotency-Key came with a different request (HTTP 422)."""


@dataclass(frozen=True)
class RecordedEvent:
    position: int
    stream_id: str
    stream_type: str
    version: int
    event_id: str
    event: DomainEvent
    metadata: dict[str, Any]
    recorded_at: datetime


@dataclass(frozen=True)
class AppendResult:
    stream_id: str
    version: int  # the stream's version after the append
    position: int  # the last appended event's position
    event_ids: tuple[str, ...]
    replayed: bool = False  # true when an Idempotency-Key repeat returned the first result

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "event_ids": list(self.event_ids)}


@dataclass(frozen=True)
class Idempotency:
    key: str
    issuer: str
    organisation: str
    actor: str
    request_hash: str

    @classmethod
    def for_request(cls, key: str, actor: Actor, *parts: Any) -> Idempotency:
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
        return cls(key=key, issuer=actor.issuer, organisation=actor.organisation, actor=actor.id,
                   request_hash=digest)


class _KeyTaken(Exception):
    """A live row holds the Idempotency-Key: roll the append back and answer with that row's result."""


class StreamStore(Protocol):
    """What the command handler needs of an event store."""

    async def load(self, stream_id: str) -> list[RecordedEvent]: ...

    async def append(self, stream_id: str, stream_type: str, expected_version: int, events: Sequence[DomainEvent],
                     metadata: EventMetadata, idempotency: Idempotency | None = None) -> AppendResult: ...

    async def idempotent_result(self, idempotency: Idempotency) -> AppendResult | None: ...

    async def stream_version(self, stream_id: str) -> int: ...


# The hot write path talks asyncpg directly (on a pooled connection): a third of the CPU of going
# through SQLAlchemy's execution layer, measured by bench/submit_split.py.
_INSERT_EVENTS = """
    with appended as (
        insert into events (stream_id, stream_type, version, event_id, event_type, schema_version, data, metadata)
        select $1, $2, t.version, t.event_id, t.event_type, t.schema_version, t.data, $3::jsonb
        from unnest($4::integer[], $5::uuid[], $6::text[], $7::integer[], $8::jsonb[])
             as t(version, event_id, event_type, schema_version, data)
        order by t.version
        returning position
    ), queued as (
        insert into outbox (position) select position from appended returning position
    )
    select max(position) from queued
"""
# An expired row under the same key is replaced; a live one leaves nothing returned.
_INSERT_IDEMPOTENCY_KEY = """
    insert into idempotency_keys (issuer, organisation, actor, key, request_hash, result)
    values ($1, $2, $3, $4, $5, $6)
    on conflict on constraint idempotency_keys_pkey do update
        set request_hash = excluded.request_hash, result = excluded.result, created_at = now()
        where idempotency_keys.created_at < now() - make_interval(secs => $7)
    returning 1
"""
DEFAULT_IDEMPOTENCY_RETENTION_S = 24 * 3600

# Group commit: the appends of several commands (one per stream and per Idempotency-Key) in one statement, so one
# round trip and one commit. Run outside a transaction block, the statement is its own transaction. A command whose
# expected version is not its stream's is left out (a conflict); one whose key a live row holds too (its first
# result answers). The key row's result has no position (not known before the insert): it is read from its last
# event. A race with another process (unique violation) or any other error fails the statement: each command of
# the group is then appended alone, so one command's failure is only its own.
_APPEND_GROUP = """
    with cmd as (
        select * from unnest($1::integer[], $2::text[], $3::text[], $4::integer[], $5::jsonb[], $6::text[],
                             $7::text[], $8::text[], $9::text[], $10::text[], $11::jsonb[])
            as c(n, stream_id, stream_type, expected, metadata, k_issuer, k_org, k_actor, k_key, k_hash, k_result)
    ), current_version as (
        select c.n from cmd c
        where c.expected = coalesce((select max(e.version) from events e where e.stream_id = c.stream_id), 0)
    ), claimed as (
        insert into idempotency_keys (issuer, organisation, actor, key, request_hash, result)
        select c.k_issuer, c.k_org, c.k_actor, c.k_key, c.k_hash, c.k_result
        from cmd c join current_version using (n) where c.k_key is not null
        on conflict on constraint idempotency_keys_pkey do update
            set request_hash = excluded.request_hash, result = excluded.result, created_at = now()
            where idempotency_keys.created_at < now() - make_interval(secs => $18)
        returning issuer, organisation, actor, key
    ), admitted as (
        select c.n, c.stream_id, c.stream_type, c.metadata from cmd c join current_version using (n)
        where c.k_key is null or exists (select 1 from claimed k where k.issuer = c.k_issuer
                                         and k.organisation = c.k_org and k.actor = c.k_actor and k.key = c.k_key)
    ), appended as (
        insert into events (stream_id, stream_type, version, event_id, event_type, schema_version, data, metadata)
        select a.stream_id, a.stream_type, t.version, t.event_id, t.event_type, t.schema_version, t.data, a.metadata
        from unnest($12::integer[], $13::integer[], $14::uuid[], $15::text[], $16::integer[], $17::jsonb[])
             as t(n, version, event_id, event_type, schema_version, data)
        join admitted a using (n)
        order by t.n, t.version
        returning position, stream_id
    ), queued as (
        insert into outbox (position) select position from appended returning position
    )
    select c.n, v.n is not null as version_ok,
           (select max(p.position) from appended p where p.stream_id = c.stream_id) as position
    from cmd c left join current_version v using (n)
"""
GROUP_MAX_COMMANDS = 256

# A batch of several commands' events, each event with its own metadata, written in the caller's transaction.
_INSERT_BATCH = """
    with appended as (
        insert into events (stream_id, stream_type, version, event_id, event_type, schema_version, data, metadata)
        select t.stream_id, t.stream_type, t.version, t.event_id, t.event_type, t.schema_version, t.data, t.metadata
        from unnest($1::text[], $2::text[], $3::integer[], $4::uuid[], $5::text[], $6::integer[], $7::jsonb[],
                    $8::jsonb[]) with ordinality
             as t(stream_id, stream_type, version, event_id, event_type, schema_version, data, metadata, n)
        order by t.n
        returning event_id, position
    ), queued as (
        insert into outbox (position) select position from appended
    )
    select event_id::text, position from appended
"""
_LOAD_STREAMS = text(
    "select position, stream_id, stream_type, version, event_id, event_type, schema_version, data, metadata,"
    " recorded_at from events where stream_id = any(:s) order by stream_id, version"
).columns(data=JSONB, metadata=JSONB)


@dataclass(frozen=True)
class NewEvent:
    """One event of a batch written in the caller's transaction (`EventStore.append_in`)."""

    stream_id: str
    stream_type: str
    version: int
    event_id: str
    event: DomainEvent
    metadata: EventMetadata


@dataclass
class _Pending:
    """One command's append waiting for its group."""

    stream_id: str
    stream_type: str
    expected_version: int
    events: Sequence[DomainEvent]
    metadata: EventMetadata
    idempotency: Idempotency | None
    done: asyncio.Future[AppendResult]

    @property
    def key(self) -> tuple[str, str, str, str] | None:
        i = self.idempotency
        return (i.issuer, i.organisation, i.actor, i.key) if i is not None else None


class EventStore:
    """`group_commit`: appends that arrive while another group is being written share the next group's statement
    (one round trip, one commit, one outbox wake-up for all of them); False: one transaction per append."""

    def __init__(self, engine: AsyncEngine, registry: EventRegistry,
                 idempotency_retention_s: float = DEFAULT_IDEMPOTENCY_RETENTION_S, *,
                 group_commit: bool = True) -> None:
        self.engine = engine
        self.registry = registry
        self.idempotency_retention_s = idempotency_retention_s
        self.group_commit = group_commit
        self._waiting: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None

    async def load(self, stream_id: str) -> list[RecordedEvent]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "select position, stream_id, stream_type, version, event_id, event_type, schema_version,"
                    " data, metadata, recorded_at from events where stream_id = :s order by version"
                ).columns(data=JSONB, metadata=JSONB),
                {"s": stream_id},
            )
            return [self._recorded(r) for r in rows]

    async def load_in(self, conn: AsyncConnection, stream_ids: Collection[str]) -> dict[str, list[RecordedEvent]]:
        """Several streams in one query, read in the caller's transaction; a stream with no events is absent."""
        streams: dict[str, list[RecordedEvent]] = {}
        for row in await conn.execute(_LOAD_STREAMS, {"s": list(stream_ids)}):
            streams.setdefault(row.stream_id, []).append(self._recorded(row))
        return streams

    async def append_in(self, conn: AsyncConnection, events: Sequence[NewEvent]) -> dict[str, int]:
        """Write the events of several commands (any streams) in the caller's transaction, with one statement;
        event id -> position. A version already taken raises `StreamsMoved`, and the transaction is lost."""
        if not events:
            return {}
        driver = (await conn.get_raw_connection()).driver_connection
        columns: list[list[Any]] = [[] for _ in range(8)]
        for e in events:
            for column, value in zip(columns, (e.stream_id, e.stream_type, e.version, e.event_id, e.event.event_type,
                                               e.event.schema_version, e.event.model_dump_json(),
                                               json.dumps(e.metadata.as_dict()))):
                column.append(value)
        try:
            rows = await driver.fetch(_INSERT_BATCH, *columns)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "events_stream_version_key":
                raise StreamsMoved("a stream of the batch changed meanwhile; run the batch again") from None
            raise
        return {event_id: position for event_id, position in rows}

    def _recorded(self, r: Any) -> RecordedEvent:
        return RecordedEvent(
            position=r.position,
            stream_id=r.stream_id,
            stream_type=r.stream_type,
            version=r.version,
            event_id=str(r.event_id),
            event=self.registry.decode(r.event_type, r.schema_version, r.data),
            metadata=r.metadata,
            recorded_at=r.recorded_at,
        )

    async def append(
        self,
        stream_id: str,
        stream_type: str,
        expected_version: int,
        events: Sequence[DomainEvent],
        metadata: EventMetadata,
        idempotency: Idempotency | None = None,
    ) -> AppendResult:
        if not events:
            raise ValueError("a command must produce at least one event")
        if not self.group_commit:
            return await self._append_one(stream_id, stream_type, expected_version, events, metadata, idempotency)
        done: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Pending(stream_id, stream_type, expected_version, events, metadata, idempotency, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_groups())
        return await asyncio.shield(done)  # a caller that goes away must not cancel its neighbours' group

    async def _write_groups(self) -> None:
        """Writes groups while appends wait: those arriving during one group's round trip form the next."""
        while self._waiting:
            group, later, streams, keys = [], [], set(), set()
            for pending in self._waiting:  # one command per stream and per key in a group; the rest wait
                if (len(group) >= GROUP_MAX_COMMANDS or pending.stream_id in streams
                        or (pending.key is not None and pending.key in keys)):
                    later.append(pending)
                    continue
                group.append(pending)
                streams.add(pending.stream_id)
                if pending.key is not None:
                    keys.add(pending.key)
            self._waiting = later
            if len(group) == 1 and group[0].idempotency is None:  # one plain statement, lighter than the group's
                await self._append_alone(group[0])
                continue
            try:
                results, rows = await self._append_group(group)
            except Exception:  # the group's statement failed as a whole: each command alone, so a failure is its own
                await asyncio.gather(*(self._append_alone(p) for p in group))
                continue
            taken = []
            for n, version_ok, position in rows:
                p = group[n]
                if position is not None:
                    _settle(p, result=replace(results[n], position=position))
                elif not version_ok:
                    _settle(p, error=ConcurrencyConflict(
                        f"stream {p.stream_id} changed since version {p.expected_version}; reload and retry",
                        code="version_conflict"))
                else:  # a live row holds the key: its first result answers
                    taken.append(self._answer_taken_key(p))
            await asyncio.gather(*taken)

    async def _append_alone(self, p: _Pending) -> None:
        try:
            result = await self._append_one(p.stream_id, p.stream_type, p.expected_version, p.events, p.metadata,
                                            p.idempotency)
        except Exception as exc:
            _settle(p, error=exc)
        else:
            _settle(p, result=result)

    async def _append_group(self, group: list[_Pending]) -> tuple[list[AppendResult], list[Any]]:
        """The group's statement: the results it would give (positions to come) and its rows."""
        cmd: list[list[Any]] = [[] for _ in range(11)]
        ev: list[list[Any]] = [[] for _ in range(6)]
        results: list[AppendResult] = []
        for n, p in enumerate(group):
            event_ids = tuple(new_id() for _ in p.events)
            version = p.expected_version + len(p.events)
            results.append(AppendResult(p.stream_id, version, 0, event_ids))
            i = p.idempotency
            stored = json.dumps({"stream_id": p.stream_id, "version": version, "event_ids": list(event_ids)})
            for column, value in zip(cmd, (n, p.stream_id, p.stream_type, p.expected_version,
                                           json.dumps(p.metadata.as_dict()), i and i.issuer, i and i.organisation,
                                           i and i.actor, i and i.key, i and i.request_hash, i and stored)):
                column.append(value)
            for offset, (event, event_id) in enumerate(zip(p.events, event_ids)):
                for column, value in zip(ev, (n, p.expected_version + offset + 1, event_id, event.event_type,
                                              event.schema_version, event.model_dump_json())):
                    column.append(value)
        async with self.engine.connect() as pooled:
            conn = (await pooled.get_raw_connection()).driver_connection
            rows = await conn.fetch(_APPEND_GROUP, *cmd, *ev, float(self.idempotency_retention_s))
        return results, [tuple(r) for r in rows]

    async def _answer_taken_key(self, p: _Pending) -> None:
        assert p.idempotency is not None
        try:
            stored = await self.idempotent_result(p.idempotency)
        except Exception as exc:
            _settle(p, error=exc)
            return
        if stored is None:  # expired between the insert and this read: the caller may retry
            _settle(p, error=ConcurrencyConflict("the Idempotency-Key was in use; retry", code="version_conflict"))
        else:
            _settle(p, result=stored)

    async def _append_one(self, stream_id: str, stream_type: str, expected_version: int,
                          events: Sequence[DomainEvent], metadata: EventMetadata,
                          idempotency: Idempotency | None) -> AppendResult:
        event_ids = [new_id() for _ in events]
        result_version = expected_version + len(events)
        try:
            async with self.engine.connect() as pooled:
                conn = (await pooled.get_raw_connection()).driver_connection
                # One statement is its own transaction (one round trip, not BEGIN + it + COMMIT); a key's row
                # is a second statement, so then both go in one transaction.
                async with conn.transaction() if idempotency is not None else nullcontext():
                    position = await conn.fetchval(
                        _INSERT_EVENTS, stream_id, stream_type, json.dumps(metadata.as_dict()),
                        list(range(expected_version + 1, result_version + 1)), event_ids,
                        [e.event_type for e in events], [e.schema_version for e in events],
                        [e.model_dump_json() for e in events])
                    result = AppendResult(stream_id, result_version, position, tuple(event_ids))
                    if idempotency is not None and await conn.fetchval(
                            _INSERT_IDEMPOTENCY_KEY, idempotency.issuer, idempotency.organisation, idempotency.actor,
                            idempotency.key, idempotency.request_hash, json.dumps(result.as_json()),
                            float(self.idempotency_retention_s)) is None:
                        raise _KeyTaken
        except _KeyTaken:
            assert idempotency is not None
            stored = await self.idempotent_result(idempotency)
            if stored is None:  # expired between the insert and this read: the caller may retry
                raise ConcurrencyConflict("the Idempotency-Key was in use; retry", code="version_conflict") from None
            return stored
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "events_stream_version_key":
                raise ConcurrencyConflict(
                    f"stream {stream_id} changed since version {expected_version}; reload and retry",
                    code="version_conflict",
                ) from None
            raise
        return result

    async def idempotent_result(self, idempotency: Idempotency) -> AppendResult | None:
        """The first result of a repeated Idempotency-Key, or None for a new key."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    # a group's key row has no position: its command's last event has it
                    text("select k.request_hash, k.result, e.position from idempotency_keys k left join events e"
                         " on not k.result ? 'position' and e.event_id = (k.result->'event_ids'->> -1)::uuid"
                         " where k.issuer = :i and k.organisation = :o and k.actor = :a and k.key = :k"
                         " and k.created_at >= now() - make_interval(secs => :r)"
                         ).columns(result=JSONB),
                    {"i": idempotency.issuer, "o": idempotency.organisation, "a": idempotency.actor,
                     "k": idempotency.key, "r": float(self.idempotency_retention_s)},
                )
            ).first()
        if row is None:
            return None
        if row.request_hash != idempotency.request_hash:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used for a different request", field="Idempotency-Key"
            )
        stored = dict(row.result)
        stored.setdefault("position", row.position)
        stored["event_ids"] = tuple(stored["event_ids"])
        stored["replayed"] = True
        return AppendResult(**stored)

    async def stream_version(self, stream_id: str) -> int:
        async with self.engine.connect() as conn:
            v = (await conn.execute(text("select max(version) from events where stream_id = :s"), {"s": stream_id})).scalar()
        return v or 0


def _settle(p: _Pending, *, result: AppendResult | None = None, error: BaseException | None = None) -> None:
    if p.done.done():  # its caller went away
        return
    if error is not None:
        p.done.set_exception(error)
    else:
        p.done.set_result(result)  # type: ignore[arg-type]


def fold(evolve: Callable[[S | None, DomainEvent], S], events: Sequence[RecordedEvent]) -> S | None:
    state: S | None = None
    for recorded in events:
        state = evolve(state, recorded.event)
    return state


async def purge_idempotency_keys(engine: AsyncEngine, retention_s: float) -> int:
    """Delete Idempotency-Key results older than the retention; the number deleted."""
    async with engine.begin() as conn:
        result = await conn.execute(text("delete from idempotency_keys where created_at < now()"
                                         " - make_interval(secs => :r)"), {"r": float(retention_s)})
    return result.rowcount or 0


async def run_idempotency_cleanup(engine: AsyncEngine, retention_s: float, stop: asyncio.Event,
                                  interval_s: float | None = None) -> None:
    """A worker loop: purge expired keys every `interval_s` (default: a tenth of the retention, at most 10 min)."""
    interval = interval_s or min(retention_s / 10, 600.0)
    while not stop.is_set():
        await purge_idempotency_keys(engine, retention_s)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass
