"""The `facts` projection: what intake and the SLA monitor said about each request, as appraisal needs it.

Read through tolerant readers (only the fields used here, any further fields ignored), so the other
services can add to their events without breaking this one.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import AwareDatetime
from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.appraisal.projections.tables import metadata, request_credits, sla_outcomes
from opsat.common.consumer import ReceivedEvent
from opsat.common.reactions import ForeignEvent

R = request_credits.c


class _Request(ForeignEvent):
    request_id: str
    at: AwareDatetime


class Submitted(_Request):
    event_type: ClassVar[str] = "opsat.intake.request.submitted"
    organisation_id: str
    kind: str
    priority: str
    service: str | None = None
    team: str | None = None


class Accepted(_Request):
    event_type: ClassVar[str] = "opsat.intake.request.accepted"
    team: str


class Assigned(_Request):
    event_type: ClassVar[str] = "opsat.intake.request.assigned"
    team: str


class PriorityOverridden(_Request):
    event_type: ClassVar[str] = "opsat.intake.request.priority_overridden"
    priority: str


class Resolved(_Request):
    event_type: ClassVar[str] = "opsat.intake.request.resolved"
    by: str


class Reopened(_Request):
    event_type: ClassVar[str] = "opsat.intake.request.reopened"


class ResponseMet(_Request):
    event_type: ClassVar[str] = "opsat.sla.clock.response_met"
    on_time: bool


class ResolutionMet(_Request):
    event_type: ClassVar[str] = "opsat.sla.clock.resolution_met"
    on_time: bool


READS: tuple[type[ForeignEvent], ...] = (Submitted, Accepted, Assigned, PriorityOverridden, Resolved, Reopened,
                                         ResponseMet, ResolutionMet)


class FactsProjection:
    name = "facts"
    sources = ("intake", "sla")
    metadata = metadata

    def __init__(self, intake_topic: str, sla_topic: str) -> None:
        self.topics = [intake_topic, sla_topic]

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        reader = next((r for r in READS if r.matches(received)), None)
        if reader is None:
            return
        event = reader.read(received)
        rid = event.request_id  # type: ignore[attr-defined]

        async def change(**values: object) -> None:
            await conn.execute(update(request_credits).where(R.request_id == rid).values(**values))

        match event:
            case Submitted():
                await conn.execute(insert(request_credits).on_conflict_do_nothing(), [{
                    "request_id": rid, "organisation_id": event.organisation_id, "kind": event.kind,
                    "priority": event.priority, "service": event.service, "team": event.team}])
            case Accepted() | Assigned():
                await change(team=event.team)
            case PriorityOverridden():
                await change(priority=event.priority)
            case Resolved():
                await change(engineer=event.by, resolved_at=event.at, resolved_event_id=received.id)
            case Reopened():
                await change(reopen_event_ids=func.array_append(R.reopen_event_ids, received.id))
            case ResponseMet() | ResolutionMet():
                target = "response" if isinstance(event, ResponseMet) else "resolution"
                row = {"request_id": rid, "target": target, "on_time": int(event.on_time), "met_at": event.at,
                       "event_id": received.id}
                stmt = insert(sla_outcomes).values(row)
                # A reopened request is resolved again: the latest outcome counts.
                await conn.execute(stmt.on_conflict_do_update(
                    index_elements=["request_id", "target"], set_={k: stmt.excluded[k] for k in row if k != "target"},
                    where=sla_outcomes.c.met_at <= stmt.excluded.met_at))
