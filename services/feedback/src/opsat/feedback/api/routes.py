"""Feedback HTTP API: templates and contacts (staff), complaints and follow-ups (the closed loop), the public
answer endpoints (the token is the only credential) and the satisfaction figures.

No `from __future__ import annotations` here: FastAPI reads the annotations of the endpoints below.
"""

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy import text

from opsat.common import observability as obs
from opsat.common.auth import require
from opsat.common.commands import CommandMeta, CommandRouter, Commands, CreationMeta, queries
from opsat.common.domain import Actor, Conflict, Gone, InvalidInput, NotFound, Role
from opsat.common.errors import problem
from opsat.feedback.api import schemas as s
from opsat.feedback.api.ratelimit import Quota, SharedRateLimiter, retry_after
from opsat.feedback.app.handlers import callers
from opsat.feedback.domain import commands as c
from opsat.feedback.domain import events as ev
from opsat.feedback.domain import scoring, tokens
from opsat.feedback.domain.surveys import UNKNOWN_LINK
from opsat.feedback.domain.templates import Template
from opsat.feedback.projections.queries import FeedbackQueries, check_groups, check_period

STAFF = (Role.agent, Role.team_lead, Role.manager, Role.admin)
ANALYSTS = (*STAFF, Role.auditor, Role.risk_officer, Role.service)
Queries = Annotated[FeedbackQueries, Depends(queries)]
Analysts = Annotated[Actor, Depends(require(*ANALYSTS))]
Slug = Annotated[str, Path(min_length=1, max_length=31, pattern=r"^[a-z0-9][a-z0-9-]*$")]
SubjectId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:@-]+$")]
FollowUpId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^fu-[a-z0-9-]+$")]
SurveyId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^svy-[a-z0-9]+$")]
Filter = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")]
GroupBy = Annotated[list[str] | None, Query(max_length=5, description="team, engineer, kind, service, priority, "
                                                                      "organisation, campaign")]
Period = Annotated[str | None, Query(description="day, week, month, quarter or year")]
Limit = Annotated[int, Query(ge=1, le=500)]

template_router = CommandRouter(prefix="/api/v1", tags=["templates"], item_path="/templates/{template_id}",
                                id_param=Slug, accepted=s.TemplateAccepted, callers=callers)
template_router.command("define", c.DefineTemplate, s.TemplateBody,
                        "Create or replace a survey template (a new version; issued surveys keep theirs)",
                        "Dimensions rated 1-5 with whole-per-cent weights summing to 100, labels in Chinese and "
                        "English, the comment and follow-up thresholds, anonymity")

contact_router = CommandRouter(prefix="/api/v1", tags=["contacts"], item_path="/contacts/{contact_id}",
                               id_param=SubjectId, accepted=s.ContactAccepted, callers=callers)
contact_router.command("register", c.RegisterContact, s.ContactBody,
                       "Register where a customer contact (a requester's subject id) receives surveys",
                       "The e-mail address and language (zh or en) surveys of this requester's closed requests go to")

CampaignId = Annotated[str, Path(min_length=1, max_length=31, pattern=r"^[a-z0-9][a-z0-9-]*$")]
campaign_router = CommandRouter(prefix="/api/v1", tags=["campaigns"], item_path="/campaigns/{campaign_id}",
                                id_param=CampaignId, accepted=s.CampaignAccepted, callers=callers)
campaign_router.command("launch", c.LaunchCampaign, s.CampaignBody,
                        "Launch a relationship survey: every listed customer contact gets one survey",
                        "Contacts are registered ids (`/contacts/{id}/register`); unregistered ones are skipped. The "
                        "response rate per campaign: `/response-rate?group_by=campaign`")

followup_router = CommandRouter(prefix="/api/v1", tags=["follow-ups"], item_path="/follow-ups/{followup_id}",
                                id_param=FollowUpId, accepted=s.FollowUpAccepted, callers=callers)
followup_router.command("contact", c.RecordContact, s.NoteBody, "Record contact with the customer (→ contacted)")
followup_router.command("resolve", c.ResolveFollowUp, s.ResolutionBody, "Record the resolution (→ resolved)")
followup_router.command("customer-reaction", c.RecordCustomerReaction, s.ReactionBody,
                        "Record the customer's reaction: accepted → customer_confirmed, else open again")

ImprovementId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^imp-[a-z0-9]+$")]
improvement_router = CommandRouter(prefix="/api/v1", tags=["improvements"], item_path="/improvements/{improvement_id}",
                                   id_param=ImprovementId, accepted=s.ImprovementAccepted, callers=callers)
improvement_router.command("approve", c.ApproveImprovement, s.OptionalNoteBody,
                           "Approve a proposed improvement action (→ approved)",
                           "By a manager who did not propose it (403 for the proposer)")
improvement_router.command("implement", c.RecordImplementation, s.ImplementationBody,
                           "Record the implementation: when the change took effect and what was done (→ implemented)",
                           "The check is scheduled for the end of the window after `implemented_at` (plus a grace "
                           "for late answers)")
improvement_router.command("verify", c.VerifyImprovement, None,
                           "Check the action now: the scope's satisfaction before and after (→ verified)",
                           "Compares the CSAT mean, % satisfied and response count of the scope in the `window_days` "
                           "before and after the implementation, from the satisfaction read model; verdict improved "
                           "(mean up, share satisfied not down), not_improved or insufficient_data (fewer than "
                           "`min_responses` in a window). 409 until the window after has ended; the service checks "
                           "on its own at `verify_due_at`")
improvement_router.command("close", c.CloseImprovement, s.OptionalNoteBody,
                           "Close a verified action (→ closed)",
                           "A note saying why is required unless the verdict is improved")
improvement_router.command("replan", c.ReplanImprovement, s.ReplanBody,
                           "Send a verified action back to plan (→ proposed, next cycle, to be approved again)")

router = APIRouter(prefix="/api/v1")


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidInput("give a time zone offset, e.g. 2026-01-31T00:00:00+08:00", field=field)
    return value


# --- complaints ----------------------------------------------------------------------------------------
@router.post("/complaints", status_code=201, response_model=s.FollowUpAccepted, tags=["follow-ups"],
             summary="File a complaint (投诉): opens a follow-up",
             description="Customers file for themselves; staff may file for a customer (organisation_id, "
                         "customer_id). Callers: requester, agent, team_lead, manager, admin, service accounts.")
async def file_complaint(body: s.ComplaintBody, response: Response, commands: Commands, meta: CreationMeta,
                         actor: Annotated[Actor, Depends(require(*callers(c.OpenFollowUp)))]) -> s.FollowUpAccepted:
    staff = actor.is_staff
    if not staff and (body.organisation_id not in (None, actor.organisation) or
                      body.customer_id not in (None, actor.id)):
        raise InvalidInput("a customer files complaints for themselves", field="customer_id")
    command = c.OpenFollowUp(
        followup_id=f"fu-{uuid.uuid4().hex}", organisation_id=body.organisation_id or actor.organisation,
        source="complaint", reasons=("complaint",), request_id=body.request_id,
        customer_id=body.customer_id or (None if staff else actor.id), team=body.team, assignee=body.assignee,
        complaint=body.complaint)
    result = await commands.execute(command, actor, replace(meta, fingerprint=body.model_dump(mode="json")))
    return followup_router.accepted(result, response)  # type: ignore[return-value]


# --- improvement actions (PDCA) --------------------------------------------------------------------------
@router.post("/improvements", status_code=201, response_model=s.ImprovementAccepted, tags=["improvements"],
             summary="Propose an improvement action (plan): from follow-ups or a trend, for a scope",
             description="Names the follow-ups (`followup_ids`) or the trend it answers, the scope whose satisfaction "
                         "it should move (at least one of team, engineer, kind, service), and the check's window "
                         "(`window_days`, default 30) and minimum of responses per window (default 5). Callers: "
                         "agent, team_lead, manager.")
async def propose_improvement(body: s.ImprovementBody, response: Response, commands: Commands, meta: CreationMeta,
                              actor: Annotated[Actor, Depends(require(*callers(c.ProposeImprovement)))]
                              ) -> s.ImprovementAccepted:
    command = c.ProposeImprovement(improvement_id=f"imp-{uuid.uuid4().hex}", organisation_id=actor.organisation,
                                   **{**body.model_dump(), "followup_ids": tuple(body.followup_ids)})
    result = await commands.execute(command, actor, replace(meta, fingerprint=body.model_dump(mode="json")))
    return improvement_router.accepted(result, response)  # type: ignore[return-value]


@router.get("/improvements", response_model=s.ImprovementPage, tags=["improvements"],
            summary="The improvement board: actions by state, scope and owner, newest first",
            description="Filter by status (repeatable), team, engineer, kind, service and owner. Cursor pagination: "
                        "pass `next_cursor` back as `cursor`. Callers: agent, team_lead, manager, admin, auditor, "
                        "risk_officer, service accounts.")
async def improvement_board(queries: Queries, actor: Analysts,
                            status: Annotated[list[Literal["proposed", "approved", "implemented", "verified",
                                                           "closed"]] | None, Query()] = None,
                            team: Filter = None, engineer: Filter = None, kind: Filter = None, service: Filter = None,
                            owner: Filter = None, limit: Limit = 50,
                            cursor: Annotated[str | None, Query(max_length=500)] = None) -> s.ImprovementPage:
    items, next_cursor = await queries.improvements(
        actor, status=status, scope={"team": team, "engineer": engineer, "kind": kind, "service": service},
        owner=owner, limit=limit, cursor=cursor)
    return s.ImprovementPage(items=[s.ImprovementView(**i) for i in items], next_cursor=next_cursor)


@router.get("/improvements/{improvement_id}", response_model=s.ImprovementView, tags=["improvements"],
            summary="One improvement action with its history and, once checked, both windows' figures",
            description="Callers: agent, team_lead, manager, admin, auditor, risk_officer, service accounts.")
async def get_improvement(improvement_id: ImprovementId, queries: Queries, actor: Analysts) -> s.ImprovementView:
    return s.ImprovementView(**await queries.improvement(actor, improvement_id))


# --- the public answer page's API ------------------------------------------------------------------------
PUBLIC_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown or wrong token (the two look the same)"},
    409: {"description": "The survey has been answered already"},
    410: {"description": "The survey link has expired",
          "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
    429: {"description": "Too many calls from this client or for this token; retry after Retry-After seconds"},
}


def _limiter(request: Request) -> SharedRateLimiter:
    state = request.app.state
    if not hasattr(state, "answer_limits"):
        state.answer_limits = SharedRateLimiter(state.engine, state.settings.answer_limit_window_s)
    return state.answer_limits


async def _limited(request: Request, token_hash: str) -> Response | None:
    settings = request.app.state.settings
    client = request.client.host if request.client else "unknown"
    per_client = Quota(f"client:{client}", settings.answer_limit_per_client)
    per_token = Quota(f"token:{token_hash}", settings.answer_limit_per_token)
    refused = await _limiter(request).hit([per_client, per_token])
    if refused is None:
        return None
    limit, wait = refused
    what = "this client" if limit is per_client else "this survey link"
    return problem(429, f"too many calls from {what}; retry later", code="rate-limited",
                   instance=request.url.path, headers={"Retry-After": retry_after(wait)})


async def _find(request: Request, token_hash: str) -> tuple[str, str]:
    """The survey id and organisation of a token's hash, from the event store (no projection lag)."""
    async with request.app.state.engine.connect() as conn:
        # The event type is spelled out, not bound: a generic plan could not use the partial index on it.
        row = (await conn.execute(text(
            f"select stream_id, metadata->>'tenant' from events where event_type = '{ev.SurveyIssued.event_type}'"
            " and data->>'token_hash' = :h"), {"h": token_hash})).first()
    if row is None:
        raise NotFound(UNKNOWN_LINK)
    return row[0], row[1]


@router.post("/public/survey-form", response_model=s.SurveyForm, tags=["public"], responses=PUBLIC_ERRORS,
             summary="The survey a token opens: questions and labels in the respondent's language",
             description="No login: the token from the email link (`#t=<token>`) is the only credential. Rate-limited "
                         "per client and per token.")
async def survey_form(body: s.FormRequest, request: Request) -> Any:
    token_hash = tokens.token_hash(body.token)
    if (limited := await _limited(request, token_hash)) is not None:
        return limited
    survey_id, _ = await _find(request, token_hash)
    history = await request.app.state.store.load(survey_id)
    issued = history[0].event
    if any(isinstance(r.event, ev.SurveyAnswered) for r in history):
        raise Conflict("this survey has been answered already", code="survey_answered")
    if any(isinstance(r.event, ev.SurveyExpired) for r in history) or datetime.now(UTC) >= issued.expires_at:
        raise Gone("this survey link has expired", code="survey_expired")
    template = Template.from_spec(issued.template)
    lang = issued.language
    return s.SurveyForm(
        survey_id=survey_id, request_id=issued.request_id, language=lang, expires_at=issued.expires_at,
        template_id=template.template_id, template_version=template.version,
        dimensions=[{"key": d.key, "label": d.label_zh if lang == "zh" else d.label_en, "scale": [1, 2, 3, 4, 5]}
                    for d in template.dimensions],
        nps_label=template.nps_label_zh if lang == "zh" else template.nps_label_en,
        comment_label=template.comment_label_zh if lang == "zh" else template.comment_label_en,
        comment_required_below=template.comment_required_below, max_comment_chars=template.max_comment_chars,
        anonymous=template.anonymous)


@router.post("/public/answers", status_code=201, response_model=s.AnswerAccepted, tags=["public"],
             responses=PUBLIC_ERRORS, summary="Answer a survey with its token (once)",
             description="Every dimension rated 1-5 (none pre-selected), NPS 0-10, a comment below the template's "
                         "threshold. A used token answers 409, an expired one 410, an unknown or wrong one 404. "
                         "Rate-limited per client and per token (429 with Retry-After).")
async def answer(body: s.AnswerBody, request: Request, commands: Commands) -> Any:
    token_hash = tokens.token_hash(body.token)
    if (limited := await _limited(request, token_hash)) is not None:
        return limited
    survey_id, organisation = await _find(request, token_hash)
    respondent = Actor(id=f"respondent:{survey_id}", organisation=organisation, roles=frozenset({Role.requester}))
    command = c.AnswerSurvey(survey_id=survey_id, token_hash=token_hash, template_version=body.template_version,
                             ratings=body.ratings, nps=body.nps, comment=body.comment)
    result = await commands.execute(command, respondent, CommandMeta(correlation_id=obs.correlation_id.get() or ""))
    history = await request.app.state.store.load(survey_id)
    answered = next(r.event for r in history if r.event_id in result.event_ids)
    band = scoring.band(answered.score)
    zh = history[0].event.language == "zh"
    return s.AnswerAccepted(survey_id=survey_id, score=answered.score, band=band.key,
                            thanks=f"感谢您的评价！（{band.zh}）" if zh else f"Thank you! ({band.en})")


# --- figures and lists ---------------------------------------------------------------------------------
FIGURES = "Callers: agent, team_lead, manager, admin, auditor, risk_officer, service accounts."


@router.get("/satisfaction", tags=["figures"], summary="CSAT (mean score, % satisfied) and NPS",
            description="Of the responses answered in [since, until), grouped by period and any of team, engineer, "
                        f"kind, service, priority, organisation. Satisfied: score ≥ 75. {FIGURES}")
async def satisfaction(queries: Queries, actor: Analysts, since: s.IsoDateTime | None = None, until: s.IsoDateTime | None = None,
                       group_by: GroupBy = None, period: Period = None) -> list[dict[str, Any]]:
    return await queries.satisfaction(actor, since=_aware(since, "since"), until=_aware(until, "until"),
                                      group_by=check_groups(group_by), period=check_period(period))


@router.get("/satisfaction/service-facts", tags=["figures"],
            summary="CSAT and NPS by how requests were served: SLA breached or met, reassignments, reopened",
            description="Of the responses answered in [since, until); `by`: sla (breached, met, unknown), "
                        f"reassignments (count) or reopened (true/false), from intake's and the SLA monitor's events. "
                        f"{FIGURES}")
async def by_service_facts(queries: Queries, actor: Analysts, by: Literal["sla", "reassignments", "reopened"] = "sla",
                           since: s.IsoDateTime | None = None,
                           until: s.IsoDateTime | None = None) -> list[dict[str, Any]]:
    return await queries.by_service_facts(actor, by=by, since=_aware(since, "since"), until=_aware(until, "until"))


@router.get("/satisfaction/dimensions", tags=["figures"], summary="Mean rating per survey dimension",
            description=f"Dimension breakdown of the responses answered in [since, until), grouped as /satisfaction. "
                        f"{FIGURES}")
async def dimensions(queries: Queries, actor: Analysts, since: s.IsoDateTime | None = None, until: s.IsoDateTime | None = None,
                     group_by: GroupBy = None, period: Period = None) -> list[dict[str, Any]]:
    return await queries.dimensions(actor, since=_aware(since, "since"), until=_aware(until, "until"),
                                    group_by=check_groups(group_by), period=check_period(period))


@router.get("/response-rate", tags=["figures"], summary="Surveys issued, answered and expired, and the response rate",
            description=f"Of the surveys issued in [since, until), grouped as /satisfaction. {FIGURES}")
async def response_rate(queries: Queries, actor: Analysts, since: s.IsoDateTime | None = None,
                        until: s.IsoDateTime | None = None, group_by: GroupBy = None,
                        period: Period = None) -> list[dict[str, Any]]:
    return await queries.response_rate(actor, since=_aware(since, "since"), until=_aware(until, "until"),
                                       group_by=check_groups(group_by), period=check_period(period))


@router.get("/verbatims", tags=["figures"], summary="Respondents' comments, newest first",
            description="The respondent of an anonymous template is withheld (requester_id null). Pass the last "
                        f"`answered_at` as `before` for the next page. {FIGURES}")
async def verbatims(queries: Queries, actor: Analysts, since: s.IsoDateTime | None = None, until: s.IsoDateTime | None = None,
                    before: s.IsoDateTime | None = None, team: Filter = None,
                    band: Literal["very_satisfied", "satisfied", "neutral", "dissatisfied",
                                  "very_dissatisfied"] | None = None,
                    limit: Limit = 50) -> list[dict[str, Any]]:
    return await queries.verbatims(actor, since=_aware(since, "since"), until=_aware(until, "until"), team=team,
                                   band=band, before=_aware(before, "before"), limit=limit)


@router.get("/follow-ups", tags=["follow-ups"], summary="Follow-ups and complaints, soonest due first",
            description=f"Filter by status, overdue, source (survey or complaint) and owner. {FIGURES}")
async def list_followups(queries: Queries, actor: Analysts,
                         status: Annotated[list[Literal["open", "contacted", "resolved", "customer_confirmed"]] | None,
                                           Query()] = None,
                         overdue: bool | None = None, source: Literal["survey", "complaint"] | None = None,
                         owner: Filter = None, limit: Limit = 100) -> list[dict[str, Any]]:
    return await queries.followups(actor, status=status, overdue=overdue, source=source, owner=owner, limit=limit)


@router.get("/follow-ups/{followup_id}", tags=["follow-ups"], summary="One follow-up with its history",
            description="Callers: staff, auditors, service accounts; a customer sees their own complaint's.")
async def get_followup(followup_id: FollowUpId, queries: Queries,
                       actor: Annotated[Actor, Depends(require(Role.requester, *ANALYSTS))]) -> dict[str, Any]:
    return await queries.followup(actor, followup_id)


@router.get("/surveys", tags=["surveys"], summary="Surveys, newest first, with status and delivery",
            description=f"Filter by request and status. {FIGURES}")
async def list_surveys(queries: Queries, actor: Analysts, request_id: Filter = None,
                       status: Literal["issued", "answered", "expired"] | None = None,
                       limit: Limit = 100) -> list[dict[str, Any]]:
    return await queries.surveys(actor, request_id=request_id, status=status, limit=limit)


@router.get("/surveys/{survey_id}", tags=["surveys"], summary="One survey: status, reminder, delivery attempts",
            description=f"`delivery` shows per email (invitation, reminder) its status, attempts and last error. "
                        f"{FIGURES}")
async def get_survey(survey_id: SurveyId, queries: Queries, actor: Analysts) -> dict[str, Any]:
    return await queries.survey(actor, survey_id)


@router.get("/templates", tags=["templates"], summary="Every survey template at its current version",
            description="Callers: staff, auditors, service accounts.")
async def list_templates(queries: Queries, actor: Analysts) -> list[dict[str, Any]]:
    return await queries.templates()


@router.get("/templates/{template_id}", tags=["templates"], summary="A survey template at its current version",
            description="Callers: staff, auditors, service accounts.")
async def get_template(template_id: Slug, queries: Queries, actor: Analysts) -> dict[str, Any]:
    return await queries.template(template_id)
