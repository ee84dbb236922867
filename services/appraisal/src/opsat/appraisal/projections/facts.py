"""The `facts` projection: what intake, the SLA monitor, feedback and risk said about each request and
each engineer or team, as appraisal needs it.

Read through tolerant readers (only the fields used here, any further fields ignored), so the other
services can add to their events without breaking this one.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.appraisal.projections.tables import metadata, request_credits, sla_outcomes, subject_facts
from opsat.common.consumer import ReceivedEvent
from opsat.common.domain import Instant
from opsat.common.reactions import ForeignEvent

R = request_credits.c


class _Request(ForeignEvent):
    request_id: str
    at: Instant


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


class SurveyAnswered(ForeignEvent):
    """A transactional survey's answer: its score counts for the engineer and team it names (a relationship
    survey names none, so it counts for nobody)."""

    event_type: ClassVar[str] = "opsat.feedback.survey.answered"
    at: Instant
    score: float
    request_id: str | None = None
    team: str | None = None
    assignee: str | None = None


class FollowUpOpened(ForeignEvent):
    """Counted only when it comes from a complaint (a low score is already in the CSAT)."""

    event_type: ClassVar[str] = "opsat.feedback.followup.opened"
    at: Instant
    organisation_id: str
    source: str
    request_id: str | None = None
    team: str | None = None
    assignee: str | None = None


class RiskIdentified(ForeignEvent):
    """A risk raised against a team counts for the team (a service's risk names no one appraised)."""

    event_type: ClassVar[str] = "opsat.risk.risk.identified"
    at: Instant
    subject_type: str
    subject: str


class EmergencyActivated(ForeignEvent):
    """Counts for the team it names and, when a request triggered it, that request's engineer and team."""

    event_type: ClassVar[str] = "opsat.risk.emergency.activated"
    at: Instant
    team: str | None = None
    trigger: dict[str, Any] = {}


SUBJECT_FACT_READS = (SurveyAnswered, FollowUpOpened, RiskIdentified, EmergencyActivated)
READS: tuple[type[ForeignEvent], ...] = (Submitted, Accepted, Assigned, PriorityOverridden, Resolved, Reopened,
                                         ResponseMet, ResolutionMet, *SUBJECT_FACT_READS)


def subject_fact(event: ForeignEvent) -> dict[str, Any] | None:
    """The `subject_facts` row of a feedback or risk event (None: it is no fact about anyone)."""
    match event:
        case SurveyAnswered():
            return {"fact": "csat", "request_id": event.request_id, "engineer": event.assignee,
                    "team": event.team, "score": Decimal(str(event.score))}
        case FollowUpOpened() if event.source == "complaint":
            return {"fact": "complaint", "request_id": event.request_id, "engineer": event.assignee,
                    "team": event.team, "organisation_id": event.organisation_id}
        case RiskIdentified() if event.subject_type == "team":
            return {"fact": "risk", "team": event.subject}
        case EmergencyActivated():
            request_id = event.trigger.get("request_id")
            return {"fact": "emergency", "request_id": request_id if isinstance(request_id, str) else None,
                    "team": event.team}
    return None


class FactsProjection:
    name = "facts"
    sources = ("intake", "sla", "feedback", "risk")
    metadata = metadata
    handles = READS  # the runner skips the rest of four topics' traffic before any database work

    def __init__(self, *topics: str) -> None:
        self.topics = list(topics)

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        reader = next((r for r in READS if r.matches(received)), None)
        if reader is None:
            return
        event = reader.read(received)
        if isinstance(event, SUBJECT_FACT_READS):
            if (row := subject_fact(event)) is not None:
                row = {"event_id": received.id, "at": event.at, "request_id": None, "engineer": None, "team": None,
                       "organisation_id": None, "score": None, **row}
                await conn.execute(insert(subject_facts).on_conflict_do_nothing(), [row])
            return
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
