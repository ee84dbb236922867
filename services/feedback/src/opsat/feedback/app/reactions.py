"""What the feedback service does on events: intake's closures issue surveys; its own events set the surveys'
and follow-ups' deadlines, queue the emails, and open follow-ups for low answers.

`SurveyOnClose` reads intake through a tolerant reader. A closure event carries no facts about the request, so
the reaction keeps the few it needs (requester, team, assignee, kind, priority, service) from earlier intake
events in its own table (`reactions.feedback_request_facts`), and the last invitation per person
(`reactions.feedback_respondents`) for the sampling rule. The survey id is derived from the closure event's id:
a replayed topic finds the survey issued already and issues nothing, whatever the dedupe tables remember.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any, ClassVar

from sqlalchemy import Column, DateTime, MetaData, PrimaryKeyConstraint, String, Table, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.common import deadlines
from opsat.common.consumer import ReceivedEvent
from opsat.common.db import REACTIONS_SCHEMA
from opsat.common.domain import DomainError, Instant
from opsat.common.eventstore import StreamStore, fold
from opsat.common.reactions import CommandReaction, ForeignEvent, reaction_metadata
from opsat.feedback.app.delivery import enqueue
from opsat.feedback.domain import commands as c
from opsat.feedback.domain import contacts, sampling, templates, tokens
from opsat.feedback.domain import events as ev
from opsat.feedback.settings import FeedbackSettings

log = logging.getLogger(__name__)

SURVEY_REMINDER, SURVEY_EXPIRY, FOLLOWUP_OVERDUE = "survey_reminder", "survey_expiry", "followup_overdue"
IMPROVEMENT_CHECK = "improvement_check"
SURVEY_IDS = uuid.UUID("6f1c2a52-8d7e-4f3b-9a55-0c8e4d2b7a10")  # namespace of ids derived from event ids

# What the survey reaction remembers (reactions schema: survives read-model rebuilds). Created by the migration.
reaction_tables = MetaData(schema=REACTIONS_SCHEMA)
request_facts = Table(
    "feedback_request_facts", reaction_tables,
    Column("request_id", String, primary_key=True),
    Column("organisation_id", String, nullable=False),
    Column("requester_id", String, nullable=False),
    Column("team", String), Column("assignee", String), Column("kind", String), Column("priority", String),
    Column("service", String),
)
respondents = Table(
    "feedback_respondents", reaction_tables,
    Column("organisation_id", String, nullable=False),
    Column("requester_id", String, nullable=False),
    Column("last_invited_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("organisation_id", "requester_id"),
)


# --- the fields feedback reads of intake's events ------------------------------------------------------
class _IntakeEvent(ForeignEvent):
    request_id: str
    at: Instant


class Submitted(_IntakeEvent):
    event_type: ClassVar[str] = "opsat.intake.request.submitted"
    organisation_id: str
    requester_id: str
    kind: str
    priority: str
    service: str | None = None
    team: str | None = None


class Accepted(_IntakeEvent):
    event_type: ClassVar[str] = "opsat.intake.request.accepted"
    team: str
    assignee: str | None = None


class Assigned(_IntakeEvent):
    event_type: ClassVar[str] = "opsat.intake.request.assigned"
    team: str
    assignee: str | None = None


class PriorityOverridden(_IntakeEvent):
    event_type: ClassVar[str] = "opsat.intake.request.priority_overridden"
    priority: str


class Closed(_IntakeEvent):
    event_type: ClassVar[str] = "opsat.intake.request.closed"


INTAKE_READS: tuple[type[ForeignEvent], ...] = (Submitted, Accepted, Assigned, PriorityOverridden, Closed)


def survey_id_for(event_id: str) -> str:
    return f"svy-{uuid.uuid5(SURVEY_IDS, event_id).hex}"


class SurveyOnClose(CommandReaction):
    name: ClassVar[str] = "survey_on_close"
    sources: ClassVar[tuple[str, ...]] = ("intake",)
    command: ClassVar[type] = c.IssueSurvey
    handles: ClassVar[tuple[type, ...]] = INTAKE_READS

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        read = next((cls.read(received) for cls in INTAKE_READS if cls.matches(received)), None)
        self._command: c.IssueSurvey | None = None
        match read:
            case Submitted():
                await conn.execute(insert(request_facts).values(
                    request_id=read.request_id, organisation_id=read.organisation_id, requester_id=read.requester_id,
                    team=read.team, kind=read.kind, priority=read.priority, service=read.service,
                ).on_conflict_do_nothing())
            case Accepted() | Assigned():
                await conn.execute(request_facts.update().where(request_facts.c.request_id == read.request_id)
                                   .values(team=read.team, assignee=read.assignee))
            case PriorityOverridden():
                await conn.execute(request_facts.update().where(request_facts.c.request_id == read.request_id)
                                   .values(priority=read.priority))
            case Closed():
                await self._survey(conn, received, read)

    async def _survey(self, conn: AsyncConnection, received: ReceivedEvent, closed: Closed) -> None:
        assert self.handler is not None, "the service kit sets the handler"
        settings: FeedbackSettings = self.handler.aggregate_for(c.IssueSurvey).settings  # type: ignore[attr-defined]
        facts = (await conn.execute(select(request_facts).where(
            request_facts.c.request_id == closed.request_id))).mappings().first()
        if facts is None:
            log.info("request %s closed without a submit this service saw: no survey", closed.request_id)
            return
        person = {"organisation_id": facts["organisation_id"], "requester_id": facts["requester_id"]}
        # The row lock serialises closures of one person across worker replicas until this transaction commits.
        await conn.execute(insert(respondents).values(**person, last_invited_at=closed.at - timedelta(days=36500))
                           .on_conflict_do_nothing())
        last = (await conn.execute(select(respondents.c.last_invited_at).where(
            respondents.c.organisation_id == person["organisation_id"],
            respondents.c.requester_id == person["requester_id"]).with_for_update())).scalar_one()
        survey_id = survey_id_for(received.id)
        rule = sampling.SamplingRule(window=timedelta(seconds=settings.sampling_window_s), rate=settings.sampling_rate)
        existing = await self.handler.store.stream_version(survey_id)
        surveyed, why = (True, "issued already") if existing else sampling.should_survey(rule, last, closed.at,
                                                                                        received.id)
        if not surveyed:
            log.info("request %s closed: no survey (%s)", closed.request_id, why)
            return
        contact = await contact_of(self.handler.store, facts["requester_id"], facts["organisation_id"])
        template = await current_template(self.handler.store, settings.survey_template) or templates.DEFAULT_TEMPLATE
        token = tokens.token_for(settings.token_key_bytes(), survey_id)
        self._command = c.IssueSurvey(
            survey_id=survey_id, organisation_id=facts["organisation_id"], request_id=closed.request_id,
            requester_id=facts["requester_id"], template=template.to_spec(), token_hash=tokens.token_hash(token),
            language=contact.language if contact else settings.default_language,
            recipient=contact.email if contact else None,
            validity=timedelta(seconds=settings.survey_validity_s),
            reminder_after=timedelta(seconds=settings.survey_reminder_after_s),
            team=facts["team"], assignee=facts["assignee"], kind=facts["kind"], priority=facts["priority"],
            service=facts["service"])
        await super().apply(conn, received)
        await conn.execute(respondents.update().where(
            respondents.c.organisation_id == person["organisation_id"],
            respondents.c.requester_id == person["requester_id"]).values(last_invited_at=closed.at))

    def command_for(self, received: ReceivedEvent) -> Any | None:
        return self._command


async def contact_of(store: StreamStore, contact_id: str, organisation_id: str | None) -> contacts.Contact | None:
    contact = fold(contacts.evolve, [r for r in await store.load(contact_id) if r.stream_type == "contact"])
    if contact is not None and organisation_id is not None and contact.organisation_id != organisation_id:
        return None
    return contact


async def current_template(store: StreamStore, template_id: str) -> templates.Template | None:
    return (fold(templates.evolve, [r for r in await store.load(template_id) if r.stream_type == "survey_template"])
            or templates.shipped(template_id))


class CampaignSurveys(CommandReaction):
    """A launched campaign issues one survey per registered contact (ids derived from campaign and contact, so a
    replay issues nothing new); a contact without a registration is skipped and logged."""

    name: ClassVar[str] = "campaign_surveys"
    sources: ClassVar[tuple[str, ...]] = ("feedback",)
    command: ClassVar[type] = c.IssueSurvey
    handles: ClassVar[tuple[type, ...]] = (ev.CampaignLaunched,)

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        event = received.event
        if not isinstance(event, ev.CampaignLaunched):
            return
        assert self.handler is not None, "the service kit sets the handler"
        settings: FeedbackSettings = self.handler.aggregate_for(c.IssueSurvey).settings  # type: ignore[attr-defined]
        template = await current_template(self.handler.store, event.template_id) or templates.DEFAULT_TEMPLATE
        batch = self.handler.batch(conn)
        for contact_id in event.contact_ids:
            contact = await contact_of(self.handler.store, contact_id, None)
            if contact is None:
                log.info("campaign %s: contact %s is not registered; no survey", event.campaign_id, contact_id)
                continue
            survey_id = f"svy-{uuid.uuid5(SURVEY_IDS, f'{event.campaign_id}:{contact_id}').hex}"
            token = tokens.token_for(settings.token_key_bytes(), survey_id)
            command = c.IssueSurvey(
                survey_id=survey_id, organisation_id=contact.organisation_id, request_id=None,
                campaign_id=event.campaign_id, requester_id=contact_id, template=template.to_spec(),
                token_hash=tokens.token_hash(token), language=contact.language, recipient=contact.email,
                validity=timedelta(seconds=settings.survey_validity_s),
                reminder_after=timedelta(seconds=settings.survey_reminder_after_s))
            outcome = await batch.execute(command, self.actor, self.meta(received))
            if isinstance(outcome, DomainError):  # issued already: a decision, not a failure
                log.info("campaign %s: no survey for %s: %s", event.campaign_id, contact_id, outcome.detail)
        await batch.commit()

    def command_for(self, received: ReceivedEvent) -> Any | None:
        return None  # apply issues one command per contact


class FollowUpOnAnswer(CommandReaction):
    """A low score or an NPS detractor opens a follow-up (its id derived from the survey: opened once)."""

    name: ClassVar[str] = "followup_opener"
    sources: ClassVar[tuple[str, ...]] = ("feedback",)
    command: ClassVar[type] = c.OpenFollowUp
    handles: ClassVar[tuple[type, ...]] = (ev.SurveyAnswered,)

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        event = received.event
        self._command: c.OpenFollowUp | None = None
        if not isinstance(event, ev.SurveyAnswered) or not event.follow_up_reasons:
            return
        assert self.handler is not None, "the service kit sets the handler"
        issued = next(r.event for r in await self.handler.store.load(event.survey_id)
                      if isinstance(r.event, ev.SurveyIssued))
        anonymous = bool(issued.template.get("anonymous"))
        self._command = c.OpenFollowUp(
            followup_id=f"fu-{uuid.uuid5(SURVEY_IDS, event.survey_id).hex}", organisation_id=issued.organisation_id,
            source="survey", reasons=tuple(event.follow_up_reasons), survey_id=event.survey_id,
            request_id=issued.request_id, customer_id=None if anonymous else issued.requester_id, team=issued.team,
            assignee=issued.assignee)
        await super().apply(conn, received)

    def command_for(self, received: ReceivedEvent) -> Any | None:
        return self._command


class SurveyScheduler:
    """The service's own events -> deadlines (reminder, expiry, overdue follow-up, an improvement action's check)
    and the mail outbox."""

    name = "survey_scheduler"
    sources = ("feedback",)
    metadata = reaction_metadata()
    handles = (ev.SurveyIssued, ev.SurveyReminded, ev.SurveyAnswered, ev.SurveyExpired, ev.FollowUpOpened,
               ev.FollowUpResolved, ev.FollowUpOverdue, ev.CustomerReacted, ev.ImprovementImplemented,
               ev.ImprovementVerified)

    def __init__(self, topic: str) -> None:
        self.topics = [topic]

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        event = received.event
        match event:
            case ev.SurveyIssued():
                await deadlines.schedule(conn, SURVEY_REMINDER, event.survey_id, event.remind_at)
                await deadlines.schedule(conn, SURVEY_EXPIRY, event.survey_id, event.expires_at)
                await enqueue(conn, event, "invitation", event.at)
            case ev.SurveyReminded():
                issued = await _issued(conn, event.survey_id)
                if issued is not None:
                    await enqueue(conn, issued, "reminder", event.at)
            case ev.SurveyAnswered() | ev.SurveyExpired():
                await deadlines.cancel(conn, SURVEY_REMINDER, event.survey_id)
                await deadlines.cancel(conn, SURVEY_EXPIRY, event.survey_id)
            case ev.FollowUpOpened():
                await deadlines.schedule(conn, FOLLOWUP_OVERDUE, event.followup_id, event.due_at)
            case ev.FollowUpResolved() | ev.FollowUpOverdue():
                await deadlines.cancel(conn, FOLLOWUP_OVERDUE, event.followup_id)
            case ev.CustomerReacted(due_at=due_at) if due_at is not None:  # a rejection re-arms the overdue flag
                await deadlines.schedule(conn, FOLLOWUP_OVERDUE, event.followup_id, due_at)
            case ev.ImprovementImplemented():
                await deadlines.schedule(conn, IMPROVEMENT_CHECK, event.improvement_id, event.verify_due_at)
            case ev.ImprovementVerified():
                await deadlines.cancel(conn, IMPROVEMENT_CHECK, event.improvement_id)


async def _issued(conn: AsyncConnection, survey_id: str) -> ev.SurveyIssued | None:
    data = (await conn.execute(text("select data from events where stream_id = :s and event_type = :t"),
                               {"s": survey_id, "t": ev.SurveyIssued.event_type})).scalar()
    return ev.SurveyIssued.model_validate(data) if data is not None else None
