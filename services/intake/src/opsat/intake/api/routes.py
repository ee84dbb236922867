"""Intake HTTP API: commands (POST, one line per domain command) and queries (GET, from the read model).

A command route's body has the command's field names; the kit builds the command from path and body,
and admits the roles the domain's rule names. No `from __future__ import annotations` here: FastAPI
reads the annotations of the endpoints below.
"""

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Path, Query, Request, Response

from opsat.common.api import read_wait
from opsat.common.auth import require
from opsat.common.commands import CommandRouter, CreationMeta, queries
from opsat.common.domain import Actor, Role
from opsat.common.ids import new_id
from opsat.common.isotime import IsoDateTime, aware
from opsat.intake.api import schemas as s
from opsat.intake.api.schemas import NO_NUL
from opsat.intake.domain import commands as c
from opsat.intake.domain.aggregate import callers
from opsat.intake.domain.values import Priority, RequestKind, Status
from opsat.intake.projections.queries import IntakeQueries, RequestFilters

STAFF = (Role.agent, Role.team_lead, Role.manager, Role.admin)
READERS = (Role.requester, *STAFF, Role.auditor, Role.risk_officer, Role.service)

RequestId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Queries = Annotated[IntakeQueries, Depends(queries)]

# Command routes admit the roles the domain's rule names (aggregate.callers); the rule checks the rest.
router = CommandRouter(prefix="/api/v1", tags=["requests"], item_path="/requests/{request_id}", id_param=RequestId,
                       accepted=s.CommandAccepted, callers=callers)
command = router.command


@router.post("/requests", status_code=201, response_model=s.CommandAccepted, summary="Submit a service request",
             description="Opens a request (status `submitted`). Priority comes from the impact x urgency matrix "
                         "of the organisation's policy. Callers: requester, staff, service accounts.")
async def submit(body: s.SubmitBody, request: Request, response: Response, meta: CreationMeta,
                 actor: Annotated[Actor, Depends(require(*callers(c.SubmitRequest)))]) -> s.CommandAccepted:
    command = c.SubmitRequest(
        request_id=new_id(), kind=body.kind, channel=body.channel, title=body.title,
        description=body.description, impact=body.impact, urgency=body.urgency,
        requester_id=body.requester_id or actor.id, organisation_id=body.organisation_id or actor.organisation,
        service=body.service, customer_tier=body.customer_tier, requires_approval=body.requires_approval,
        team=body.team, watchers=tuple(body.watchers))
    if meta.idempotency_key:  # only a repeat under the same key compares fingerprints
        meta = replace(meta, fingerprint=body.model_dump(mode="json"))
    result = await request.app.state.commands.execute(command, actor, meta)  # not a dependency: cheaper
    response.headers["Location"] = f"/api/v1/requests/{result.stream_id}"
    return router.accepted(result, response)


# --- life cycle (请求 → 受理 → 处理 → 验证 → 关闭) ---------------------------------------------------
command("accept", c.AcceptRequest, s.AcceptBody, "Accept (受理) a submitted request")
command("reject", c.RejectRequest, s.ReasonBody, "Reject a submitted request")
command("start", c.StartWork, None, "Start work (accepted or reopened -> in_progress)")
command("request-info", c.RequestCustomerInfo, s.QuestionBody,
        "Ask the requester for information (-> awaiting_customer; SLA clock pauses)")
command("provide-info", c.ProvideCustomerInfo, s.AnswerBody, "Answer the question (-> in_progress)")
command("resolve", c.ResolveRequest, s.ResolveBody, "Deliver a solution (-> resolved; auto-closes if unanswered)")
command("accept-delivery", c.AcceptDelivery, s.CommentBody, "Accept the delivery (-> closed)")
command("reject-delivery", c.RejectDelivery, s.ReasonBody, "Reject the delivery with a reason (-> reopened)")
command("reopen", c.ReopenRequest, s.ReasonBody, "Reopen a closed request within the reopen window (-> reopened)")
command("cancel", c.CancelRequest, s.ReasonBody, "Cancel a request before it is resolved")
command("priority", c.OverridePriority, s.PriorityBody, "Override the computed priority, with a reason")

# --- approval of service requests and changes --------------------------------------------------------
command("approval/approve", c.ApproveRequest, s.CommentBody, "Approve a request that the catalogue sends for approval")
command("approval/decline", c.DeclineRequest, s.ReasonBody, "Decline approval (-> rejected)")

# --- requirement confirmation and change (需求确认 / 需求变更) -----------------------------------------
command("requirement", c.RecordRequirement, s.RequirementBody,
        "Record scope and acceptance criteria (to be confirmed by the requester)")
command("requirement/confirm", c.ConfirmRequirement, None, "Confirm the recorded requirement")
command("requirement/changes", c.ProposeRequirementChange, s.RequirementChangeBody,
        "Propose a change to the confirmed requirement (returns its change id in the timeline)")
command("requirement/changes/assess", c.AssessRequirementChange, s.AssessmentBody,
        "Assess a proposed change (effort, impact)")
command("requirement/changes/approve", c.ApproveRequirementChange, s.ChangeRef,
        "Approve a requirement change (requirement version + 1)")
command("requirement/changes/reject", c.RejectRequirementChange, s.ChangeRejection, "Reject a requirement change")

# --- assignment, collaboration, communication -----------------------------------------------------------
command("assign", c.AssignRequest, s.AssignBody, "Assign or reassign to a team and assignee")
command("watchers", c.AddWatcher, s.WatcherBody, "Add a watcher")
command("watchers/remove", c.RemoveWatcher, s.WatcherBody, "Remove a watcher")
command("replies", c.AddReply, s.MessageBody,
        "Public reply (visible to the requester); a requester's reply resumes awaiting work")
command("notes", c.AddInternalNote, s.MessageBody, "Internal note (staff only, never shown to requesters)")
command("links", c.LinkRequest, s.LinkBody, "Link to another request (parent/child, duplicate, caused-by)")
command("links/remove", c.UnlinkRequest, s.LinkBody, "Remove a link")
command("time-entries", c.LogTime, s.TimeBody, "Log time spent by the calling agent")


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
    submitted_from: Annotated[IsoDateTime | None, Query(description="inclusive, ISO 8601 with offset")] = None,
    submitted_to: Annotated[IsoDateTime | None, Query(description="exclusive, ISO 8601 with offset")] = None,
    open_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> s.RequestPage:
    filters = RequestFilters(
        status=[x.value for x in status] if status else None, priority=[x.value for x in priority] if priority else None,
        kind=[x.value for x in kind] if kind else None, team=team, assignee=assignee, requester=requester,
        organisation=organisation, service=service, submitted_from=aware(submitted_from, "submitted_from"),
        submitted_to=aware(submitted_to, "submitted_to"), open_only=open_only)
    items, next_cursor = await queries.list(actor, filters, limit=limit, cursor=cursor)
    return s.RequestPage(items=[s.RequestView(**i) for i in items], next_cursor=next_cursor)


@router.get("/requests/{request_id}", response_model=s.RequestDetail, summary="One request with links and time",
            description="Pass `min_version` (the `version` a command returned) to wait briefly until the read model "
                        "has it (read-your-writes); `X-Opsat-Stale: true` says it has not yet. Callers: requester "
                        "(own organisation), staff, auditor, risk_officer, service accounts.")
async def get_request(request_id: RequestId, queries: Queries, actor: Readers, request: Request,
                      response: Response, min_version: Annotated[int | None, Query(ge=1)] = None) -> s.RequestDetail:
    async with read_wait(request, actor) as wait:
        detail, fresh = await queries.get(actor, request_id, min_version=min_version,
                                          wait_s=wait if min_version else 0.0, watch=request.app.state.read_model)
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
