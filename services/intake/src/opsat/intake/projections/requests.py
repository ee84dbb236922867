"""The `requests` projection: intake's own events -> requests, timeline, links, time entries.

Each event updates the request row (and bumps its `version`, which read-your-writes waits on) and
adds one timeline entry. Internal notes and time entries are staff-only on the timeline.
Monotone: the runner skips events its `stream_versions` says are applied, and every row update here is
also guarded by `version < event's sequence`, so an older event never moves a row back.
"""

from __future__ import annotations

from enum import Enum
from functools import cache
from typing import Any

from sqlalchemy import String, bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.selectable import Select

from opsat.common.bulk import Rows, copy_rows, insert_together, update_rows
from opsat.common.consumer import ReceivedEvent, loading
from opsat.intake.domain import events as ev
from opsat.intake.projections.tables import (
    OPEN_STATUSES,
    links,
    metadata,
    open_requests,
    requests,
    time_entries,
    timeline,
)

_ANY_ID = bindparam("ids", type_=ARRAY(String))

INTERNAL_EVENTS = (ev.InternalNoteAdded, ev.TimeLogged)  # staff-only on the timeline


def _status_changes(event: ev.IntakeEvent) -> dict[str, Any]:
    """Row changes per event type; the timeline gets every event whatever this returns."""
    match event:
        case ev.RequestAccepted():
            return {"status": "accepted", "team": event.team, "assignee": event.assignee, "accepted_at": event.at}
        case ev.RequestRejected() | ev.RequestDeclined():
            return {"status": "rejected", **({"approval": "declined"} if isinstance(event, ev.RequestDeclined) else {})}
        case ev.WorkStarted() | ev.CustomerInfoProvided():
            return {"status": "in_progress"}
        case ev.CustomerInfoRequested():
            return {"status": "awaiting_customer"}
        case ev.RequestResolved():
            return {"status": "resolved", "resolved_at": event.at}
        case ev.RequestClosed():
            return {"status": "closed", "closed_at": event.at}
        case ev.RequestReopened():
            return {"status": "reopened", "reopen_count": event.reopen_count, "closed_at": None}
        case ev.RequestCancelled():
            return {"status": "cancelled", "closed_at": event.at}
        case ev.RequestApproved():
            return {"approval": "approved"}
        case ev.PriorityOverridden():
            return {"priority": event.priority.value, "priority_overridden": True}
        case ev.RequestAssigned():
            return {"team": event.team, "assignee": event.assignee}
    return {}


@cache
def _summary_parts(cls: type[ev.IntakeEvent]) -> tuple[str, tuple[str, ...]]:
    """The event's name as a summary says it, and the fields a summary may quote that the class has: worked out once
    per class (pydantic answers `model_fields` in about 0.7 µs, and a missing attribute slowly too)."""
    return (cls.event_type.rsplit(".", 1)[-1].replace("_", " "),
            tuple(f for f in ("reason", "question", "answer", "solution", "body", "comment") if f in cls.model_fields))


def _summary(event: ev.IntakeEvent) -> str:
    name, fields = _summary_parts(type(event))
    for field in fields:
        if detail := getattr(event, field):
            if isinstance(detail, Enum):
                detail = detail.value  # "closed: accepted", not the enum's repr
            return f"{name}: {detail}"[:500]
    return name


class RequestsProjection:
    name = "requests"
    sources = ("intake",)
    metadata = metadata
    stream_local = True  # every row is the event's own request's: a rebuild replays partitions in lanes

    def __init__(self, topic: str) -> None:
        self.topics = [topic]

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        await self.apply_batch(conn, [received])

    async def apply_batch(self, conn: AsyncConnection, batch: list[ReceivedEvent]) -> None:
        """Timeline rows, new requests and their working-set rows in one statement (`insert_together`: an unnest
        per table, not SQLAlchemy's per-row executemany); then the requests touched, one UPDATE per set of columns
        changed (`update_rows`). The runner gives only events newer than what the read model reflects
        (`stream_versions`), and the updates are guarded by the row's version too.

        Status-like columns are absolute values, so a request's changes within the batch merge in order;
        the columns read-modify-written from the row (watchers, requirement, time) are written at once.
        """
        mine = [r for r in batch if isinstance(r.event, ev.IntakeEvent)]  # others: not ours, or too new
        if not mine:
            return
        submitted = [_request_row(r.event, r.sequence) for r in mine if isinstance(r.event, ev.RequestSubmitted)]
        # A rebuild's load: the runner hands each stream's versions over once (its versions check), so a row already
        # there would be a bug to report, not to skip, and the rows go in with COPY; the working set is copied once,
        # by `after_load`.
        in_load = loading(conn)
        timeline_rows = [_timeline_row(r) for r in mine]
        if in_load:
            await copy_rows(conn, Rows(timeline, timeline_rows), Rows(requests, submitted))
        else:
            await insert_together(  # one round trip
                conn, Rows(timeline, timeline_rows, on_conflict_do_nothing=True),
                Rows(requests, submitted, on_conflict_do_nothing=True),
                Rows(open_requests, [{name: row[name] for name in _OPEN_COLUMNS} for row in submitted],
                     on_conflict_do_nothing=True))  # a new request is open
        pending: dict[str, dict[str, Any]] = {}
        for received in mine:
            event = received.event
            if isinstance(event, ev.RequestSubmitted):
                continue
            read_modify_write = await self._many_sides(conn, event)
            if read_modify_write:
                await conn.execute(update(requests).where(requests.c.id == event.request_id,
                                                          requests.c.version < received.sequence)
                                   .values(**read_modify_write))
            pending.setdefault(event.request_id, {}).update(
                _status_changes(event), updated_at=event.at, version=received.sequence)
        by_columns: dict[frozenset[str], list[dict[str, Any]]] = {}  # one statement per set of columns changed
        for request_id, changes in pending.items():
            by_columns.setdefault(frozenset(changes), []).append({"id": request_id, **changes})
        for rows in by_columns.values():
            await update_rows(conn, requests, rows, key="id", newer_than="version")
        if in_load:
            return
        moved = [request_id for request_id, changes in pending.items() if not _QUEUE_COLUMNS.isdisjoint(changes)]
        if moved:  # most events (replies, notes, time) leave the working set as it is
            await _sync_open_requests(conn, moved)

    async def after_load(self, conn: AsyncConnection) -> None:
        await conn.execute(copy_open_requests())

    async def _many_sides(self, conn: AsyncConnection, event: ev.IntakeEvent) -> dict[str, Any]:
        """Events that touch the link, time or JSON columns; returns row changes."""
        match event:
            case ev.RequestLinked():
                await conn.execute(insert(links).values(
                    request_id=event.request_id, link_type=event.link_type.value, target_id=event.target_id,
                    linked_at=event.at, linked_by=event.by).on_conflict_do_nothing())
            case ev.RequestUnlinked():
                await conn.execute(links.delete().where(
                    links.c.request_id == event.request_id, links.c.link_type == event.link_type.value,
                    links.c.target_id == event.target_id))
            case ev.TimeLogged():
                await conn.execute(insert(time_entries).values(
                    request_id=event.request_id, entry_id=event.entry_id, agent_id=event.by, minutes=event.minutes,
                    work_date=event.work_date.isoformat(), note=event.note, logged_at=event.at))
                return {"time_spent_minutes": requests.c.time_spent_minutes + event.minutes}
            case ev.WatcherAdded() | ev.WatcherRemoved():
                current = await self._column(conn, event.request_id, requests.c.watchers) or []
                watchers = set(current) | {event.user_id} if isinstance(event, ev.WatcherAdded) \
                    else set(current) - {event.user_id}
                return {"watchers": sorted(watchers)}
            case (ev.RequirementRecorded() | ev.RequirementConfirmed() | ev.RequirementChangeProposed()
                  | ev.RequirementChangeAssessed() | ev.RequirementChangeApproved() | ev.RequirementChangeRejected()):
                current = await self._column(conn, event.request_id, requests.c.requirement)
                return {"requirement": _requirement(current, event)}
        return {}

    @staticmethod
    async def _column(conn: AsyncConnection, request_id: str, column: Any) -> Any:
        return await conn.scalar(requests.select().with_only_columns(column).where(requests.c.id == request_id))


_OPEN_COLUMNS = [c.name for c in open_requests.columns]


def _open_rows() -> Select[Any]:
    """The working set's columns of the open `requests` rows."""
    return select(*(requests.c[name] for name in _OPEN_COLUMNS)).where(requests.c.status.in_(OPEN_STATUSES))


def copy_open_requests(*where: Any) -> Insert:
    """INSERT into the working set the open `requests` rows (those matching `where`) as they now stand; with
    no condition, a migration's or a bulk load's catch-up."""
    return open_requests.insert().from_select(_OPEN_COLUMNS, _open_rows().where(*where))


def _sync_statement() -> Any:
    """The working set brought in line with the batch's requests, in one statement: their open rows upserted, driven
    from the ids (primary-key lookups whatever the planner thinks of `status`), and their rows that are no longer
    open deleted (in a WITH: both read `requests` as the batch's updates left it, and touch disjoint rows)."""
    ids = func.unnest(_ANY_ID).table_valued("id").render_derived(name="batch_ids")
    upsert = insert(open_requests).from_select(
        _OPEN_COLUMNS, _open_rows().select_from(ids.join(requests, requests.c.id == ids.c.id)))
    upsert = upsert.on_conflict_do_update(index_elements=[open_requests.c.id],
                                          set_={name: upsert.excluded[name] for name in _OPEN_COLUMNS if name != "id"})
    closed = delete(open_requests).where(
        open_requests.c.id == func.any(_ANY_ID),
        ~select(requests.c.id).where(requests.c.id == open_requests.c.id,
                                     requests.c.status.in_(OPEN_STATUSES)).exists())
    return upsert.add_cte(closed.returning(open_requests.c.id).cte("closed"))


_SYNC_OPEN = _sync_statement()
# The working set's columns an event after the submit can change (the others are the submit's).
_QUEUE_COLUMNS = frozenset({"status", "team", "assignee", "priority"})


async def _sync_open_requests(conn: AsyncConnection, ids: list[str]) -> None:
    """Copy the batch's requests into the working set as their rows now stand."""
    await conn.execute(_SYNC_OPEN, {"ids": ids})


def _timeline_row(received: ReceivedEvent) -> dict[str, Any]:
    event = received.event
    return {
        "request_id": event.request_id, "sequence": received.sequence, "event_id": received.id,
        "event_type": received.type, "at": event.at, "actor": event.by,
        "visibility": "internal" if isinstance(event, INTERNAL_EVENTS) else "public",
        "summary": _summary(event),
        # the payload as published, unless an upcaster reshaped it (then the current shape)
        "data": received.data if received.schema_version == event.schema_version else event.model_dump(mode="json"),
    }


def _request_row(e: ev.RequestSubmitted, version: int) -> dict[str, Any]:
    return {
        "id": e.request_id, "organisation_id": e.organisation_id, "requester_id": e.requester_id,
        "kind": e.kind.value, "channel": e.channel.value, "title": e.title, "description": e.description,
        "service": e.service, "customer_tier": e.customer_tier, "impact": e.impact, "urgency": e.urgency,
        "priority": e.priority.value, "priority_overridden": False, "status": "submitted", "team": e.team,
        "assignee": None, "watchers": sorted(e.watchers),
        "approval": "pending" if e.requires_approval else "not_required", "requirement": None,
        "reopen_count": 0, "time_spent_minutes": 0, "submitted_at": e.at, "updated_at": e.at, "version": version,
    }


def _requirement(current: dict[str, Any] | None, event: ev.IntakeEvent) -> dict[str, Any]:
    req = dict(current or {"scope": None, "acceptance_criteria": None, "version": 0, "confirmed": False,
                           "changes": {}})
    changes = dict(req.get("changes") or {})
    match event:
        case ev.RequirementRecorded():
            req.update(scope=event.scope, acceptance_criteria=event.acceptance_criteria, version=event.version,
                       confirmed=False)
        case ev.RequirementConfirmed():
            req.update(confirmed=True, version=event.version)
        case ev.RequirementChangeProposed():
            changes[event.change_id] = {"state": "proposed", "scope": event.scope,
                                        "acceptance_criteria": event.acceptance_criteria, "reason": event.reason,
                                        "base_version": event.base_version, "proposed_by": event.by}
        case ev.RequirementChangeAssessed():
            changes[event.change_id] = {**changes.get(event.change_id, {}), "state": "assessed",
                                        "effort_hours": event.effort_hours, "impact_summary": event.impact_summary}
        case ev.RequirementChangeApproved():
            changes[event.change_id] = {**changes.get(event.change_id, {}), "state": "approved",
                                        "decided_by": event.by}
            req.update(scope=event.scope, acceptance_criteria=event.acceptance_criteria, version=event.version,
                       confirmed=not event.requires_confirmation)
        case ev.RequirementChangeRejected():
            changes[event.change_id] = {**changes.get(event.change_id, {}), "state": "rejected",
                                        "decided_by": event.by, "rejection_reason": event.reason}
    req["changes"] = changes
    return req
