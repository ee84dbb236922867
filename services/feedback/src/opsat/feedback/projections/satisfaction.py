"""The `satisfaction` projection: the feedback service's own events -> surveys, responses and follow-ups."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.common.consumer import ReceivedEvent
from opsat.feedback.domain import events as ev
from opsat.feedback.projections.tables import followups, metadata, responses, surveys

S, F = surveys.c, followups.c


class SatisfactionProjection:
    name = "satisfaction"
    sources = ("feedback",)
    metadata = metadata

    def __init__(self, topic: str) -> None:
        self.topics = [topic]

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        event = received.event
        match event:
            case ev.SurveyIssued():
                template = event.template
                await conn.execute(insert(surveys).values(
                    survey_id=event.survey_id, organisation_id=event.organisation_id, request_id=event.request_id,
                    campaign_id=event.campaign_id,
                    requester_id=event.requester_id, team=event.team, assignee=event.assignee, kind=event.kind,
                    priority=event.priority, service=event.service, template_id=template["template_id"],
                    template_version=template["version"], anonymous=bool(template.get("anonymous")),
                    language=event.language, status="issued",
                    issued_at=event.at, expires_at=event.expires_at, delivery={}, updated_at=event.at,
                ).on_conflict_do_nothing())
            case ev.SurveyReminded():
                await self._survey(conn, event, reminded_at=event.at)
            case ev.SurveyExpired():
                await self._survey(conn, event, status="expired")
            case ev.SurveyAnswered():
                await self._survey(conn, event, status="answered", answered_at=event.at)
                row = (await conn.execute(select(surveys).where(S.survey_id == event.survey_id))).mappings().first()
                if row is None:
                    return
                facts = {k: row[k] for k in ("organisation_id", "request_id", "campaign_id", "requester_id", "team",
                                             "assignee",
                                             "kind", "priority", "service")}
                await conn.execute(insert(responses).values(
                    survey_id=event.survey_id, **facts, anonymous=row["anonymous"], template_id=event.template_id,
                    template_version=event.template_version, ratings=event.ratings, score=event.score,
                    band=event.band, nps=event.nps, nps_category=event.nps_category, comment=event.comment,
                    answered_at=event.at).on_conflict_do_nothing())
            case ev.MailAttempted():
                row = (await conn.execute(select(S.delivery).where(S.survey_id == event.survey_id))).first()
                if row is None:
                    return
                delivery = dict(row[0])
                delivery[event.purpose] = {"status": "pending" if event.outcome == "failed" else event.outcome,
                                           "attempts": event.attempt, "last_outcome": event.outcome,
                                           "last_error": event.error, "at": event.at.isoformat(),
                                           "next_attempt_at": event.next_attempt_at.isoformat()
                                           if event.next_attempt_at else None}
                await self._survey(conn, event, delivery=delivery)
            case ev.FollowUpOpened():
                await conn.execute(insert(followups).values(
                    followup_id=event.followup_id, organisation_id=event.organisation_id, source=event.source,
                    reasons=event.reasons, survey_id=event.survey_id, request_id=event.request_id,
                    customer_id=event.customer_id, team=event.team, assignee=event.assignee,
                    complaint=event.complaint, filed_by=event.by, owner=event.owner, status="open", overdue=False,
                    opened_at=event.at, due_at=event.due_at,
                    history=[{"status": "open", "at": event.at.isoformat(), "by": event.by}], updated_at=event.at,
                ).on_conflict_do_nothing())
            case ev.FollowUpContacted():
                await self._followup(conn, event, "contacted", event.note)
            case ev.FollowUpResolved():
                await self._followup(conn, event, "resolved", event.resolution)
            case ev.CustomerReacted() if event.accepted:
                await self._followup(conn, event, "customer_confirmed", event.comment, customer_accepted=True)
            case ev.CustomerReacted():
                due = {"due_at": event.due_at, "overdue": False} if event.due_at is not None else {}
                await self._followup(conn, event, "open", event.comment, customer_accepted=False, **due)
            case ev.FollowUpOverdue():
                await conn.execute(update(followups).where(F.followup_id == event.followup_id)
                                   .values(overdue=True, updated_at=event.at))

    async def _survey(self, conn: AsyncConnection, event: ev.SurveyEvent, **values: Any) -> None:
        await conn.execute(update(surveys).where(S.survey_id == event.survey_id).values(updated_at=event.at, **values))

    async def _followup(self, conn: AsyncConnection, event: ev.FollowUpEvent, status: str, note: str | None,
                        **values: Any) -> None:
        row = (await conn.execute(select(F.history).where(F.followup_id == event.followup_id))).first()
        if row is None:
            return
        history = [*row[0], {"status": status, "at": event.at.isoformat(), "by": event.by, "text": note}]
        await conn.execute(update(followups).where(F.followup_id == event.followup_id).values(
            status=status, history=history, updated_at=event.at, **values))
