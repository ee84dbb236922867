"""Intake HTTP API: commands (POST, one per domain command) and queries (GET, from the read model).

Each command route names who may call it (`require(...)`); the domain checks the finer rules
(own organisation, own request). No `from __future__ import annotations` here: the route factory
below relies on annotations being evaluated where the endpoint is defined.
"""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel

from opsat.common.auth import require
from opsat.common.domain import Actor, InvalidInput, Role
from opsat.common.eventstore import AppendResult
from opsat.intake.api import schemas as s
from opsat.intake.api.deps import CorrelationId, Handlers, IdempotencyKey, IfMatch, Queries, TraceParent
from opsat.intake.api.schemas import NO_NUL
from opsat.intake.domain import commands as c
from opsat.intake.domain.values import Priority, RequestKind, Status
from opsat.intake.projections.queries import RequestFilters

STAFF = (Role.agent, Role.team_lead, Role.manager, Role.admin)
APPROVERS = (Role.manager, Role.admin)
CUSTOMER_SIDE = (Role.requester, *STAFF)  # requesters of the request's organisation, and staff
OWN_REQUESTER = (Role.requester,)  # the domain narrows this to the request's own requester
SUBMITTERS = (*CUSTOMER_SIDE, Role.service)
READERS = (*CUSTOMER_SIDE, Role.auditor, Role.risk_officer, Role.service)

RequestId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]

router = APIRouter(prefix="/api/v1", tags=["requests"])


def _accepted(result: AppendResult, response: Response) -> s.CommandAccepted:
    response.headers["ETag"] = f'"{result.version}"'
    return s.CommandAccepted(request_id=result.stream_id, version=result.version, position=result.position,
                             event_ids=list(result.event_ids), replayed=result.replayed)


@router.post("/requests", status_code=201, response_model=s.CommandAccepted, summary="Submit a service request",
             description="Opens a request (status `submitted`). Priority comes from the impact x urgency matrix "
                         "of the organisation's policy. Callers: requester, staff, service accounts.")
async def submit(body: s.SubmitBody, response: Response, handlers: Handlers, correlation: CorrelationId,
                 trace: TraceParent, key: IdempotencyKey,
                 actor: Annotated[Actor, Depends(require(*SUBMITTERS))]) -> s.CommandAccepted:
    command = c.SubmitRequest(
        request_id=str(uuid.uuid4()), kind=body.kind, channel=body.channel, title=body.title,
        description=body.description, impact=body.impact, urgency=body.urgency,
        requester_id=body.requester_id or actor.id, organisation_id=body.organisation_id or actor.organisation,
        service=body.service, customer_tier=body.customer_tier, requires_approval=body.requires_approval,
        team=body.team, watchers=tuple(body.watchers))
    result = await handlers.execute(command, actor, correlation_id=correlation, idempotency_key=key,
                                    traceparent=trace, request_fingerprint=body.model_dump(mode="json"))
    response.headers["Location"] = f"/api/v1/requests/{result.stream_id}"
    return _accepted(result, response)


def action(path: str, summary: str, roles: tuple[Role, ...], build: Callable[..., Any],
           body_model: type[BaseModel] | None = None, description: str | None = None) -> None:
    """Register POST /api/v1/requests/{request_id}/<path>: body -> command -> handler."""
    callers = ", ".join(r.value for r in roles)
    doc = f"{description or summary}. Callers: {callers}. Send If-Match to act only on the version you saw."

    async def run(request_id: str, body: BaseModel | None, response: Response, handlers: Any, correlation: str,
                  trace: str | None, key: str | None, expected: int | None, actor: Actor) -> s.CommandAccepted:
        command = build(request_id, body) if body_model else build(request_id)
        fingerprint = [request_id, body.model_dump(mode="json") if body is not None else None]
        result = await handlers.execute(command, actor, correlation_id=correlation, idempotency_key=key,
                                        expected_version=expected, traceparent=trace, request_fingerprint=fingerprint)
        return _accepted(result, response)

    if body_model is not None:
        async def endpoint(request_id: RequestId, body: body_model, response: Response,  # type: ignore[valid-type]
                           handlers: Handlers, correlation: CorrelationId, trace: TraceParent, key: IdempotencyKey,
                           expected: IfMatch, actor: Annotated[Actor, Depends(require(*roles))]) -> s.CommandAccepted:
            return await run(request_id, body, response, handlers, correlation, trace, key, expected, actor)
    else:
        async def endpoint(request_id: RequestId, response: Response, handlers: Handlers,  # type: ignore[misc]
                           correlation: CorrelationId, trace: TraceParent, key: IdempotencyKey, expected: IfMatch,
                           actor: Annotated[Actor, Depends(require(*roles))]) -> s.CommandAccepted:
            return await run(request_id, None, response, handlers, correlation, trace, key, expected, actor)

    endpoint.__name__ = path.replace("/", "_").replace("-", "_").replace("{", "").replace("}", "")
    router.add_api_route(f"/requests/{{request_id}}/{path}", endpoint, methods=["POST"], summary=summary,
                         description=doc, response_model=s.CommandAccepted)


# --- life cycle (请求 → 受理 → 处理 → 验证 → 关闭) ---------------------------------------------------
action("accept", "Accept (受理) a submitted request", STAFF,
       lambda rid, b: c.AcceptRequest(rid, team=b.team, assignee=b.assignee), s.AcceptBody)
action("reject", "Reject a submitted request", STAFF, lambda rid, b: c.RejectRequest(rid, b.reason), s.ReasonBody)
action("start", "Start work (accepted or reopened -> in_progress)", STAFF, lambda rid: c.StartWork(rid))
action("request-info", "Ask the requester for information (-> awaiting_customer; SLA clock pauses)", STAFF,
       lambda rid, b: c.RequestCustomerInfo(rid, b.question), s.QuestionBody)
action("provide-info", "Answer the question (-> in_progress)", CUSTOMER_SIDE,
       lambda rid, b: c.ProvideCustomerInfo(rid, b.answer), s.AnswerBody)
action("resolve", "Deliver a solution (-> resolved; auto-closes if unanswered)", STAFF,
       lambda rid, b: c.ResolveRequest(rid, b.solution), s.ResolveBody)
action("accept-delivery", "Accept the delivery (-> closed)", OWN_REQUESTER,
       lambda rid, b: c.AcceptDelivery(rid, comment=b.comment), s.CommentBody)
action("reject-delivery", "Reject the delivery with a reason (-> reopened)", OWN_REQUESTER,
       lambda rid, b: c.RejectDelivery(rid, b.reason), s.ReasonBody)
action("reopen", "Reopen a closed request within the reopen window (-> reopened)", OWN_REQUESTER,
       lambda rid, b: c.ReopenRequest(rid, b.reason), s.ReasonBody)
action("cancel", "Cancel a request before it is resolved", OWN_REQUESTER,
       lambda rid, b: c.CancelRequest(rid, b.reason), s.ReasonBody)
action("priority", "Override the computed priority, with a reason", STAFF,
       lambda rid, b: c.OverridePriority(rid, b.priority, b.reason), s.PriorityBody)

# --- approval of service requests and changes --------------------------------------------------------
action("approval/approve", "Approve a request that the catalogue sends for approval", APPROVERS,
       lambda rid, b: c.ApproveRequest(rid, comment=b.comment), s.CommentBody)
action("approval/decline", "Decline approval (-> rejected)", APPROVERS,
       lambda rid, b: c.DeclineRequest(rid, b.reason), s.ReasonBody)

# --- requirement confirmation and change (需求确认 / 需求变更) -----------------------------------------
action("requirement", "Record scope and acceptance criteria (to be confirmed by the requester)", STAFF,
       lambda rid, b: c.RecordRequirement(rid, b.scope, b.acceptance_criteria), s.RequirementBody)
action("requirement/confirm", "Confirm the recorded requirement", OWN_REQUESTER,
       lambda rid: c.ConfirmRequirement(rid))
action("requirement/changes", "Propose a change to the confirmed requirement (returns its change id in the "
       "timeline)", CUSTOMER_SIDE,
       lambda rid, b: c.ProposeRequirementChange(rid, b.change_id or str(uuid.uuid4()), b.scope,
                                                 b.acceptance_criteria, b.reason), s.RequirementChangeBody)
action("requirement/changes/assess", "Assess a proposed change (effort, impact)", STAFF,
       lambda rid, b: c.AssessRequirementChange(rid, b.change_id, b.effort_hours, b.impact_summary), s.AssessmentBody)
action("requirement/changes/approve", "Approve a requirement change (requirement version + 1)", APPROVERS,
       lambda rid, b: c.ApproveRequirementChange(rid, b.change_id), s.ChangeRef)
action("requirement/changes/reject", "Reject a requirement change", APPROVERS,
       lambda rid, b: c.RejectRequirementChange(rid, b.change_id, b.reason), s.ChangeRejection)

# --- assignment, collaboration, communication -----------------------------------------------------------
action("assign", "Assign or reassign to a team and assignee", STAFF,
       lambda rid, b: c.AssignRequest(rid, b.team, assignee=b.assignee, reason=b.reason), s.AssignBody)
action("watchers", "Add a watcher", CUSTOMER_SIDE, lambda rid, b: c.AddWatcher(rid, b.user_id), s.WatcherBody)
action("watchers/remove", "Remove a watcher", CUSTOMER_SIDE,
       lambda rid, b: c.RemoveWatcher(rid, b.user_id), s.WatcherBody)
action("replies", "Public reply (visible to the requester); a requester's reply resumes awaiting work",
       CUSTOMER_SIDE, lambda rid, b: c.AddReply(rid, str(uuid.uuid4()), b.body), s.MessageBody)
action("notes", "Internal note (staff only, never shown to requesters)", STAFF,
       lambda rid, b: c.AddInternalNote(rid, str(uuid.uuid4()), b.body), s.MessageBody)
action("links", "Link to another request (parent/child, duplicate, caused-by)", STAFF,
       lambda rid, b: c.LinkRequest(rid, b.target_id, b.link_type), s.LinkBody)
action("links/remove", "Remove a link", STAFF, lambda rid, b: c.UnlinkRequest(rid, b.target_id, b.link_type),
       s.LinkBody)
action("time-entries", "Log time spent by the calling agent", STAFF,
       lambda rid, b: c.LogTime(rid, str(uuid.uuid4()), b.minutes, note=b.note, work_date=b.work_date), s.TimeBody)


# --- queries ------------------------------------------------------------------------------------------
Readers = Annotated[Actor, Depends(require(*READERS))]


@router.get("/requests", response_model=s.RequestPage, summary="List requests with filters, newest first",
            description="Cursor pagination: pass `next_cursor` back as `cursor`. Requesters see their organisation "
                        "only. Callers: requester, staff, auditor, risk_officer, service accounts.")
async def list_requests(
    queries: Queries, actor: Readers,
    status: Annotated[list[Status] | None, Query()] = None,
    priority: Annotated[list[Priority] | None, Query()] = None,
    kind: Annotated[list[RequestKind] | None, Query()] = None,
    team: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    assignee: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    requester: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    organisation: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    service: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    submitted_from: Annotated[datetime | None, Query(description="inclusive, ISO 8601 with offset")] = None,
    submitted_to: Annotated[datetime | None, Query(description="exclusive")] = None,
    open_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> s.RequestPage:
    filters = RequestFilters(
        status=[x.value for x in status] if status else None, priority=[x.value for x in priority] if priority else None,
        kind=[x.value for x in kind] if kind else None, team=team, assignee=assignee, requester=requester,
        organisation=organisation, service=service, submitted_from=_aware(submitted_from, "submitted_from"),
        submitted_to=_aware(submitted_to, "submitted_to"), open_only=open_only)
    items, next_cursor = await queries.list(actor, filters, limit=limit, cursor=cursor)
    return s.RequestPage(items=[s.RequestView(**i) for i in items], next_cursor=next_cursor)


@router.get("/requests/{request_id}", response_model=s.RequestDetail, summary="One request with links and time",
            description="Pass `min_version` (the `version` a command returned) to wait briefly until the read model "
                        "has it (read-your-writes); `X-Opsat-Stale: true` says it has not yet. Callers: requester "
                        "(own organisation), staff, auditor, risk_officer, service accounts.")
async def get_request(request_id: RequestId, queries: Queries, actor: Readers, response: Response,
                      min_version: Annotated[int | None, Query(ge=1)] = None) -> s.RequestDetail:
    wait = 2.0 if min_version else 0.0
    detail, fresh = await queries.get(actor, request_id, min_version=min_version, wait_s=wait)
    if not fresh:
        response.headers["X-Opsat-Stale"] = "true"
    response.headers["ETag"] = f'"{detail["version"]}"'
    return s.RequestDetail(**detail)


@router.get("/requests/{request_id}/timeline", response_model=list[s.TimelineEntry],
            summary="Every event of a request in order (internal entries for staff only)",
            description="Callers: requester (own organisation; public entries only), staff, auditor, risk_officer, "
                        "service accounts.")
async def get_timeline(request_id: RequestId, queries: Queries, actor: Readers) -> list[s.TimelineEntry]:
    return [s.TimelineEntry(**e) for e in await queries.timeline(actor, request_id)]


@router.get("/queues/{team}", response_model=list[s.RequestView], summary="A team's open requests, most urgent first",
            description="Ordered by priority, then oldest first. Callers: agent, team_lead, manager, admin, auditor.",
            tags=["queues"])
async def team_queue(team: Annotated[str, Path(min_length=1, max_length=200, pattern=NO_NUL)], queries: Queries,
                     actor: Annotated[Actor, Depends(require(*STAFF, Role.auditor))],
                     limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[s.RequestView]:
    return [s.RequestView(**r) for r in await queries.team_queue(actor, team, limit=limit)]


@router.get("/stats/backlog", response_model=s.Backlog, summary="Open requests by status x priority and by age",
            description="Ageing buckets count time since submit. Callers: requester (own organisation), staff, "
                        "auditor, risk_officer, service accounts.", tags=["stats"])
async def backlog(queries: Queries, actor: Readers,
                  team: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
                  organisation: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
                  kind: Annotated[list[RequestKind] | None, Query()] = None) -> s.Backlog:
    filters = RequestFilters(team=team, organisation=organisation, kind=[k.value for k in kind] if kind else None)
    return s.Backlog(**await queries.backlog(actor, filters, datetime.now(UTC)))


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidInput("give a time zone offset, e.g. 2026-01-31T00:00:00+08:00", field=field)
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput("time is out of range", field=field) from None
    return value
