"""The `improvement_board` projection: improvement actions (PDCA) by state, scope and owner."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.common.consumer import ReceivedEvent
from opsat.feedback.domain import events as ev
from opsat.feedback.projections.tables import improvements, metadata

I = improvements.c  # noqa: E741


class ImprovementBoardProjection:
    name = "improvement_board"
    sources = ("feedback",)
    metadata = metadata
    # Only these: the runner then skips the survey traffic of the topic before any database work (a transaction
    # per poll for nothing, at every answer).
    handles = (ev.ImprovementProposed, ev.ImprovementApproved, ev.ImprovementImplemented, ev.ImprovementVerified,
               ev.ImprovementClosed, ev.ImprovementReplanned)

    def __init__(self, topic: str) -> None:
        self.topics = [topic]

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        event = received.event
        match event:
            case ev.ImprovementProposed():
                await conn.execute(insert(improvements).values(
                    improvement_id=event.improvement_id, organisation_id=event.organisation_id, title=event.title,
                    plan=event.plan, followup_ids=event.followup_ids, trend=event.trend, team=event.team,
                    engineer=event.engineer, kind=event.kind, service=event.service, owner=event.owner,
                    proposed_by=event.by, status="proposed", cycle=1, window_days=event.window_days,
                    min_responses=event.min_responses, proposed_at=event.at,
                    history=[_step("proposed", event, event.plan)], updated_at=event.at,
                ).on_conflict_do_nothing())
            case ev.ImprovementApproved():
                await self._step(conn, event, "approved", event.note, approved_by=event.by)
            case ev.ImprovementImplemented():
                await self._step(conn, event, "implemented", event.description, implemented_at=event.implemented_at,
                                 implementation=event.description, verify_due_at=event.verify_due_at)
            case ev.ImprovementVerified():
                await self._step(conn, event, "verified", event.verdict, verdict=event.verdict,
                                 before=event.before.model_dump(mode="json"),
                                 after=event.after.model_dump(mode="json"))
            case ev.ImprovementClosed():
                await self._step(conn, event, "closed", event.note)
            case ev.ImprovementReplanned():
                await self._step(conn, event, "proposed", event.reason, cycle=event.cycle, plan=event.plan,
                                 approved_by=None, implemented_at=None, implementation=None, verify_due_at=None,
                                 verdict=None, before=None, after=None)

    async def _step(self, conn: AsyncConnection, event: ev.ImprovementEvent, status: str, note: str | None,
                    **values: Any) -> None:
        row = (await conn.execute(select(I.history).where(I.improvement_id == event.improvement_id))).first()
        if row is None:
            return
        await conn.execute(update(improvements).where(I.improvement_id == event.improvement_id).values(
            status=status, history=[*row[0], _step(status, event, note)], updated_at=event.at, **values))


def _step(status: str, event: ev.ImprovementEvent, note: str | None) -> dict[str, Any]:
    return {"status": status, "at": event.at.isoformat(), "by": event.by, "text": note}
