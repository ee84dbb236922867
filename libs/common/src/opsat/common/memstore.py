"""An event store in memory, for unit tests of command handlers.

Same interface and the same contract as the PostgreSQL `EventStore` (both pass
`opsat.common.testing.store_contract`): versions from 1 per stream, positions increasing across
streams, all events of one append or none, `ConcurrencyConflict` on a stale expected version,
Idempotency-Key repeats returning the first result. Events are stored as JSON and decoded through
the `EventRegistry` when loaded, exactly as from the database, so a test catches an event that does
not serialise or does not read back. Every method yields to the event loop once, so concurrent
commands interleave between load and append as they would against a database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opsat.common.domain import DomainEvent
from opsat.common.envelope import EventMetadata, EventRegistry
from opsat.common.eventstore import (
    AppendResult,
    ConcurrencyConflict,
    Idempotency,
    IdempotencyKeyReused,
    NewEvent,
    RecordedEvent,
    StreamsMoved,
)
from opsat.common.ids import new_id


@dataclass(frozen=True)
class _StoredEvent:
    """A row of the events table: the payload kept as JSON text, as the database keeps it."""

    position: int
    stream_id: str
    stream_type: str
    version: int
    event_id: str
    event_type: str
    schema_version: int
    data: str
    metadata: str
    recorded_at: datetime


def _utc_now() -> datetime:
    return datetime.now(UTC)


class InMemoryEventStore:
    def __init__(self, registry: EventRegistry, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self.registry = registry
        self.clock = clock
        self._streams: dict[str, list[_StoredEvent]] = {}
        self._last_position = 0
        self._idempotency: dict[tuple[str, ...], tuple[str, str]] = {}  # caller and key -> (hash, result JSON)

    async def load(self, stream_id: str) -> list[RecordedEvent]:
        await asyncio.sleep(0)
        return [self._recorded(stored) for stored in self._streams.get(stream_id, [])]

    def _recorded(self, stored: _StoredEvent) -> RecordedEvent:
        return RecordedEvent(
            position=stored.position,
            stream_id=stored.stream_id,
            stream_type=stored.stream_type,
            version=stored.version,
            event_id=stored.event_id,
            event=self.registry.decode(stored.event_type, stored.schema_version, json.loads(stored.data)),
            metadata=json.loads(stored.metadata),
            recorded_at=stored.recorded_at,
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
        # Serialise everything before touching the store: a failure leaves nothing half-appended.
        payloads = [event.model_dump_json() for event in events]
        meta = json.dumps(metadata.as_dict())
        await asyncio.sleep(0)
        # From here to the end nothing awaits, so the checks and the writes are one atomic step.
        stream = self._streams.get(stream_id, [])
        # Stricter than the database, which accepts a version ahead of the stream (leaving a gap);
        # the command handler never asks for one.
        if expected_version != len(stream):
            raise ConcurrencyConflict(
                f"stream {stream_id} changed since version {expected_version}; reload and retry",
                code="version_conflict",
            )
        if idempotency is not None and _caller_key(idempotency) in self._idempotency:
            # Same order as the database: the events' version check first, then the key.
            return self._stored_result(idempotency)
        recorded_at = self.clock()
        new = []
        for offset, (event, data) in enumerate(zip(events, payloads, strict=True), start=1):
            new.append(_StoredEvent(
                position=self._last_position + offset, stream_id=stream_id, stream_type=stream_type,
                version=expected_version + offset, event_id=new_id(), event_type=event.event_type,
                schema_version=event.schema_version, data=data, metadata=meta, recorded_at=recorded_at,
            ))
        result = AppendResult(stream_id, new[-1].version, new[-1].position, tuple(e.event_id for e in new))
        self._streams[stream_id] = [*stream, *new]
        self._last_position = new[-1].position
        if idempotency is not None:
            self._idempotency[_caller_key(idempotency)] = (
                idempotency.request_hash, json.dumps(result.as_json()))
        return result

    async def load_in(self, conn: Any, stream_ids: Collection[str]) -> dict[str, list[RecordedEvent]]:
        """As the database's: there is no transaction to read in."""
        return {s: await self.load(s) for s in stream_ids if s in self._streams}

    async def append_in(self, conn: Any, events: Sequence[NewEvent]) -> dict[str, int]:
        """As the database's, all or nothing: a version taken raises `StreamsMoved` and nothing is written."""
        await asyncio.sleep(0)
        length = {s: len(stored) for s, stored in self._streams.items()}
        for e in events:
            if e.version != length.get(e.stream_id, 0) + 1:
                raise StreamsMoved(f"stream {e.stream_id} changed; run the batch again")
            length[e.stream_id] = e.version
        recorded_at, positions = self.clock(), {}
        for e in events:
            self._last_position += 1
            self._streams.setdefault(e.stream_id, []).append(_StoredEvent(
                position=self._last_position, stream_id=e.stream_id, stream_type=e.stream_type, version=e.version,
                event_id=e.event_id, event_type=e.event.event_type, schema_version=e.event.schema_version,
                data=e.event.model_dump_json(), metadata=json.dumps(e.metadata.as_dict()), recorded_at=recorded_at))
            positions[e.event_id] = self._last_position
        return positions

    async def idempotent_result(self, idempotency: Idempotency) -> AppendResult | None:
        """The first result of a repeated Idempotency-Key, or None for a new key."""
        await asyncio.sleep(0)
        if _caller_key(idempotency) not in self._idempotency:
            return None
        return self._stored_result(idempotency)

    def _stored_result(self, idempotency: Idempotency) -> AppendResult:
        request_hash, result = self._idempotency[_caller_key(idempotency)]
        if request_hash != idempotency.request_hash:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used for a different request", field="Idempotency-Key"
            )
        stored: dict[str, Any] = json.loads(result)
        return AppendResult(**{**stored, "event_ids": tuple(stored["event_ids"]), "replayed": True})

    async def stream_version(self, stream_id: str) -> int:
        await asyncio.sleep(0)
        return len(self._streams.get(stream_id, []))


def _caller_key(idempotency: Idempotency) -> tuple[str, ...]:
    """A key belongs to its caller: (issuer, organisation, subject, key), as in the database."""
    return (idempotency.issuer, idempotency.organisation, idempotency.actor, idempotency.key)
