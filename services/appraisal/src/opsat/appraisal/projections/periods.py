"""The `periods` projection: the appraisal's own events -> periods, scorecards, appeals, awards, plans."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.appraisal.domain import events as ev
from opsat.appraisal.projections.tables import (
    appeals,
    awards,
    improvement_plans,
    metadata,
    periods,
    scorecards,
)
from opsat.common.consumer import ReceivedEvent

TEAM_PREFIX = "team:"


def card_row(period_id: str, card: dict) -> dict:
    kind = "team" if card["subject"].startswith(TEAM_PREFIX) else "engineer"
    total = Decimal(card["total"]) if card["total"] is not None else None
    return {"period_id": period_id, "subject": card["subject"], "subject_kind": kind, "total": total,
            "grade": card["grade"], "card": card}


class PeriodsProjection:
    name = "periods"
    sources = ("appraisal",)
    metadata = metadata

    def __init__(self, topic: str) -> None:
        self.topics = [topic]

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        event = received.event
        match event:
            case ev.PeriodOpened():
                await conn.execute(insert(periods).on_conflict_do_nothing(), [{
                    "period_id": event.period_id, "organisation_id": event.organisation_id, "cadence": event.cadence,
                    "starts_on": event.starts_on, "ends_on": event.ends_on,
                    "catalogue_version": event.catalogue_version, "status": "open", "opened_at": event.at,
                    "updated_at": event.at}])
            case ev.PeriodCalculated():  # its cards follow: the previous calculation's go
                await conn.execute(delete(scorecards).where(scorecards.c.period_id == event.period_id))
                await conn.execute(update(periods).where(periods.c.period_id == event.period_id).values(
                    status="calculated", updated_at=event.at))
            case ev.ScorecardCalculated():
                stmt = insert(scorecards).values(card_row(event.period_id, event.scorecard))
                await conn.execute(stmt.on_conflict_do_update(
                    index_elements=["period_id", "subject"],
                    set_={k: stmt.excluded[k] for k in ("subject_kind", "total", "grade", "card")}))
            case ev.PeriodPublished():
                await conn.execute(update(periods).where(periods.c.period_id == event.period_id).values(
                    status="published", appeal_until=event.appeal_until, updated_at=event.at))
            case ev.ScoreAdjusted() | ev.AppealAmended():
                row = card_row(event.period_id, event.scorecard)
                await conn.execute(update(scorecards).where(
                    scorecards.c.period_id == event.period_id, scorecards.c.subject == event.subject).values(
                    total=row["total"], grade=row["grade"], card=row["card"]))
                if isinstance(event, ev.AppealAmended):
                    await conn.execute(update(appeals).where(appeals.c.appeal_id == event.appeal_id).values(
                        outcome="amended", review_reason=event.reason, original_score=Decimal(event.original_score),
                        score=Decimal(event.score), reviewed_by=event.by, reviewed_at=event.at))
            case ev.AppealFiled():
                await conn.execute(insert(appeals).on_conflict_do_nothing(), [{
                    "appeal_id": event.appeal_id, "period_id": event.period_id, "subject": event.subject,
                    "kpi_id": event.kpi_id, "reason": event.reason, "filed_by": event.by, "filed_at": event.at}])
            case ev.AppealUpheld():
                await conn.execute(update(appeals).where(appeals.c.appeal_id == event.appeal_id).values(
                    outcome="upheld", review_reason=event.reason, reviewed_by=event.by, reviewed_at=event.at))
            case ev.PeriodClosed():
                await conn.execute(update(periods).where(periods.c.period_id == event.period_id).values(
                    status="closed", updated_at=event.at))
            case ev.IncentiveAwarded():
                await conn.execute(insert(awards).on_conflict_do_nothing(), [{
                    "period_id": event.period_id, "subject": event.subject, "grade": event.grade,
                    "bonus_coefficient": Decimal(event.bonus_coefficient), "recognition": event.recognition,
                    "at": event.at}])
            case ev.ImprovementPlanAssigned():
                await conn.execute(insert(improvement_plans).on_conflict_do_nothing(), [{
                    "period_id": event.period_id, "subject": event.subject, "grade": event.grade,
                    "goals": event.goals, "review_on": event.review_on, "at": event.at}])
