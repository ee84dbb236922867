"""Queries over the intake read model. Visibility rules (organisation, internal entries) live here,
so every route that reads goes through the same filters."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from opsat.common.domain import Actor, InvalidInput, NotFound
from opsat.common.freshness import ReadModelWatch, wait_until
from opsat.intake.projections.tables import OPEN_STATUSES, links, open_requests, requests, time_entries, timeline

AGEING_BUCKETS = (("0-1d", 1), ("1-3d", 3), ("3-7d", 7), ("7-30d", 30), (">30d", None))


@dataclass(frozen=True)
class RequestFilters:
    status: list[str] | None = None
    priority: list[str] | None = None
    kind: list[str] | None = None
    team: str | None = None
    assignee: str | None = None
    requester: str | None = None
    organisation: str | None = None
    service: str | None = None
    submitted_from: datetime | None = None
    submitted_to: datetime | None = None
    open_only: bool = False


def encode_cursor(submitted_at: datetime, request_id: str) -> str:
    raw = json.dumps({"t": submitted_at.isoformat(), "id": request_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        at, request_id = datetime.fromisoformat(raw["t"]), raw["id"]
        if at.tzinfo is None or not isinstance(request_id, str) or "\x00" in request_id:
            raise ValueError("not a cursor")
        at.astimezone(UTC)  # out-of-range times fail here, not in the database
        return at, request_id
    except Exception:
        raise InvalidInput("cursor is not one this API returned", field="cursor") from None


def _visible_to(actor: Actor, table: Table = requests) -> Any:
    """Requesters (and anyone without a staff role) see their organisation only; a scoped service account the
    organisations it acts for."""
    if actor.reads_everything:
        return True
    if actor.scope is not None:
        return table.c.organisation_id.in_(sorted(actor.scope))
    return table.c.organisation_id == actor.organisation


def _where(f: RequestFilters, table: Table = requests) -> list[Any]:
    """The filters on `requests`, or on `open_requests` (which has every filtered column)."""
    c = table.c
    conditions: list[Any] = []
    for column, values in ((c.status, f.status), (c.priority, f.priority), (c.kind, f.kind)):
        if values:
            conditions.append(column.in_(values))
    for column, value in ((c.team, f.team), (c.assignee, f.assignee), (c.requester_id, f.requester),
                          (c.organisation_id, f.organisation), (c.service, f.service)):
        if value is not None:
            conditions.append(column == value)
    if f.submitted_from is not None:
        conditions.append(c.submitted_at >= f.submitted_from)
    if f.submitted_to is not None:
        conditions.append(c.submitted_at < f.submitted_to)
    if f.open_only:
        conditions.append(c.status.in_(OPEN_STATUSES))
    return conditions


class IntakeQueries:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get(self, actor: Actor, request_id: str, *, min_version: int | None = None,
                  wait_s: float = 0.0, watch: ReadModelWatch | None = None) -> tuple[dict[str, Any], bool]:
        """The request, and whether it is at least `min_version` (waits up to `wait_s` for the projection, woken
        by `watch` when the read model changes)."""
        found: list[Any] = [None]

        async def reached() -> bool:
            async with self.engine.connect() as conn:
                found[0] = (await conn.execute(select(requests).where(requests.c.id == request_id,
                                                                      _visible_to(actor)))).mappings().first()
            return found[0] is not None and (min_version is None or found[0]["version"] >= min_version)

        fresh = await wait_until(reached, wait_s, watch)
        if found[0] is None:
            raise NotFound(f"request {request_id} not found")
        detail = dict(found[0])
        async with self.engine.connect() as conn:
            detail["links"] = [dict(r) for r in (await conn.execute(
                select(links.c.link_type, links.c.target_id, links.c.linked_at)
                .where(links.c.request_id == request_id).order_by(links.c.linked_at))).mappings()]
            if actor.reads_everything:
                detail["time_by_agent"] = {r.agent_id: r.minutes for r in await conn.execute(
                    select(time_entries.c.agent_id, func.sum(time_entries.c.minutes).label("minutes"))
                    .where(time_entries.c.request_id == request_id).group_by(time_entries.c.agent_id))}
            else:
                detail.pop("time_spent_minutes", None)
        return detail, fresh

    async def timeline(self, actor: Actor, request_id: str) -> list[dict[str, Any]]:
        query = select(timeline).where(timeline.c.request_id == request_id).order_by(timeline.c.sequence)
        if not actor.reads_everything:
            query = query.where(timeline.c.visibility == "public")
        async with self.engine.connect() as conn:
            visible = await conn.scalar(select(requests.c.id).where(requests.c.id == request_id, _visible_to(actor)))
            if visible is None:  # unknown and another organisation's look the same
                raise NotFound(f"request {request_id} not found")
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    async def list(self, actor: Actor, filters: RequestFilters, *, limit: int, cursor: str | None
                   ) -> tuple[list[dict[str, Any]], str | None]:
        query = select(requests).where(_visible_to(actor), *_where(filters))
        if cursor:
            at, last_id = decode_cursor(cursor)
            query = query.where(or_(requests.c.submitted_at < at,
                                    and_(requests.c.submitted_at == at, requests.c.id < last_id)))
        query = query.order_by(requests.c.submitted_at.desc(), requests.c.id.desc()).limit(limit + 1)
        async with self.engine.connect() as conn:
            rows = [dict(r) for r in (await conn.execute(query)).mappings()]
        next_cursor = encode_cursor(rows[limit - 1]["submitted_at"], rows[limit - 1]["id"]) if len(rows) > limit else None
        return rows[:limit], next_cursor

    async def team_queue(self, actor: Actor, team: str, *, limit: int) -> list[dict[str, Any]]:
        """Open requests of a team, most urgent first, oldest first within a priority: the first `limit` of the
        working set's queue index, then their rows."""
        queue = (select(open_requests.c.id, open_requests.c.priority, open_requests.c.submitted_at)
                 .where(_visible_to(actor, open_requests), open_requests.c.team == team)
                 .order_by(open_requests.c.priority, open_requests.c.submitted_at, open_requests.c.id)
                 .limit(limit).subquery())
        query = (select(requests).join(queue, queue.c.id == requests.c.id)
                 .order_by(queue.c.priority, queue.c.submitted_at, queue.c.id))
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    async def backlog(self, actor: Actor, filters: RequestFilters, now: datetime) -> dict[str, Any]:
        """Open requests counted by status x priority, and by age since submit: one pass over the working set,
        counting per cell the requests submitted after each bucket's bound (a comparison with a constant, not
        date arithmetic per row)."""
        bounds = [days for _, days in AGEING_BUCKETS if days]
        younger = [func.count().filter(open_requests.c.submitted_at > now - timedelta(days=days)) for days in bounds]
        query = (select(open_requests.c.status, open_requests.c.priority, func.count(), *younger)
                 .where(_visible_to(actor, open_requests), *_where(filters, open_requests))
                 .group_by(open_requests.c.status, open_requests.c.priority))
        async with self.engine.connect() as conn:
            cells = (await conn.execute(query)).all()
        matrix: dict[str, dict[str, int]] = {}
        ageing = {name: 0 for name, _ in AGEING_BUCKETS}
        for status, priority, total, *within in cells:
            matrix.setdefault(status, {})[priority] = total
            for (name, _), count, before in zip(AGEING_BUCKETS, [*within, total], [0, *within], strict=True):
                ageing[name] += count - before
        return {"total": sum(cell[2] for cell in cells), "by_status_priority": matrix, "ageing": ageing,
                "as_of": now}
