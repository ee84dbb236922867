"""The transactional survey: issued on a request's closure, answered once with its token, reminded once,
expired after its validity; each email attempt recorded on it.

A wrong token is answered exactly like an unknown survey (NotFound), so a guesser learns nothing.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from opsat.common.domain import AlreadyExists, Conflict, DomainEvent, Gone, InvalidInput, NotDueYet, NotFound
from opsat.feedback.domain import answers
from opsat.feedback.domain import commands as c
from opsat.feedback.domain import events as ev
from opsat.feedback.domain.templates import Template

UNKNOWN_LINK = "this survey link is not valid"


@dataclass(frozen=True)
class Survey:
    survey_id: str
    organisation_id: str
    requester_id: str
    template: Template
    token_hash: str
    remind_at: datetime
    expires_at: datetime
    status: str = "issued"  # issued | answered | expired
    reminded: bool = False
    mail_attempts: int = 0
    # Whose work the survey judges, carried onto the answer so consumers need not join it to the issue.
    request_id: str | None = None
    campaign_id: str | None = None
    team: str | None = None
    assignee: str | None = None


def evolve(state: Survey | None, event: DomainEvent) -> Survey:
    match event:
        case ev.SurveyIssued():
            return Survey(event.survey_id, event.organisation_id, event.requester_id,
                          Template.from_spec(event.template), event.token_hash, event.remind_at, event.expires_at,
                          request_id=event.request_id, campaign_id=event.campaign_id, team=event.team,
                          assignee=event.assignee)
    if state is None:  # another kind of stream under this id: no survey
        raise NotFound(UNKNOWN_LINK)
    match event:
        case ev.SurveyReminded():
            return replace(state, reminded=True)
        case ev.SurveyExpired():
            return replace(state, status="expired")
        case ev.SurveyAnswered():
            return replace(state, status="answered")
        case ev.MailAttempted():
            return replace(state, mail_attempts=state.mail_attempts + 1)
    raise TypeError(f"{type(event).__name__} is no survey event")


def decide(state: Survey | None, command: Any, now: datetime) -> list[DomainEvent]:
    match command:
        case c.IssueSurvey():
            if state is not None:
                raise AlreadyExists(f"survey {command.survey_id} was issued already", field="survey_id")
            return [ev.SurveyIssued(
                survey_id=command.survey_id, at=now, organisation_id=command.organisation_id,
                request_id=command.request_id, campaign_id=command.campaign_id, requester_id=command.requester_id,
                team=command.team,
                assignee=command.assignee, kind=command.kind, priority=command.priority, service=command.service,
                template=command.template, token_hash=command.token_hash, language=command.language,
                recipient=command.recipient, remind_at=now + command.reminder_after,
                expires_at=now + command.validity)]
    if state is None:
        raise NotFound(UNKNOWN_LINK)
    match command:
        case c.AnswerSurvey():
            if not hmac.compare_digest(state.token_hash, command.token_hash):
                raise NotFound(UNKNOWN_LINK)
            if state.status == "answered":
                raise Conflict("this survey has been answered already", code="survey_answered")
            if state.status == "expired" or now >= state.expires_at:
                raise Gone("this survey link has expired", code="survey_expired")
            if command.template_version != state.template.version:
                raise InvalidInput(f"this survey asks template {state.template.template_id} version "
                                   f"{state.template.version}", field="template_version")
            judged = answers.judge(state.template, command.ratings, command.nps, command.comment)
            return [ev.SurveyAnswered(
                survey_id=state.survey_id, at=now, request_id=state.request_id, campaign_id=state.campaign_id,
                team=state.team, assignee=state.assignee, template_id=state.template.template_id,
                template_version=state.template.version, ratings={k: int(v) for k, v in command.ratings.items()},
                nps=int(command.nps), comment=(command.comment or "").strip() or None, score=judged.score,
                band=judged.band, nps_category=judged.nps_category, follow_up_reasons=list(judged.follow_up_reasons))]
        case c.RemindSurvey():
            if state.status != "issued" or state.reminded or now >= state.expires_at:
                raise Conflict("no reminder for an answered, expired or reminded survey")
            if now < state.remind_at:
                raise NotDueYet("the reminder is not due yet", due_at=state.remind_at)
            return [ev.SurveyReminded(survey_id=state.survey_id, at=now)]
        case c.ExpireSurvey():
            if state.status != "issued":
                raise Conflict("only an unanswered survey expires")
            if now < state.expires_at:
                raise NotDueYet("the survey has not expired yet", due_at=state.expires_at)
            return [ev.SurveyExpired(survey_id=state.survey_id, at=now)]
        case c.RecordMailAttempt():
            return [ev.MailAttempted(survey_id=state.survey_id, at=now, purpose=command.purpose,
                                     attempt=command.attempt, outcome=command.outcome, error=command.error,
                                     next_attempt_at=command.next_attempt_at)]
    raise TypeError(f"no survey rule for {type(command).__name__}")

