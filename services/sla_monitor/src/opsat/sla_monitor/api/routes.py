"""SLA monitor HTTP API: configuration commands (calendars and policies, administrators) and queries.

Clocks have no command routes: only intake's events and their timer move them. No `from __future__
import annotations` here: FastAPI reads the annotations of the endpoints below.
"""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from opsat.common.auth import require
from opsat.common.commands import CommandRouter, queries
from opsat.common.domain import Actor, InvalidInput, Role
from opsat.common.isotime import IsoDate, IsoDateTime, aware
from opsat.sla_monitor.api import schemas as s
from opsat.sla_monitor.app.handlers import callers
from opsat.sla_monitor.domain import commands as c
from opsat.sla_monitor.projections.queries import GROUPS, SlaQueries, check_period

STAFF = (Role.agent, Role.team_lead, Role.manager, Role.admin, Role.auditor, Role.risk_officer, Role.service)
READERS = (Role.requester, *STAFF)

ConfigId = Annotated[str, Path(min_length=1, max_length=31, pattern=r"^[a-z0-9][a-z0-9-]*$")]
RequestId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Queries = Annotated[SlaQueries, Depends(queries)]
Staff = Annotated[Actor, Depends(require(*STAFF))]
Readers = Annotated[Actor, Depends(require(*READERS))]

calendar_router = CommandRouter(prefix="/api/v1", tags=["calendars"], item_path="/calendars/{calendar_id}",
                                id_param=ConfigId, accepted=s.CalendarAccepted, callers=callers)
calendar_router.command("define", c.DefineCalendar, s.CalendarBody,
                        "Create or replace a business calendar (a new version; running clocks keep theirs)")
calendar_router.command("days", c.AddCalendarDays, s.DaysBody,
                        "Add holidays and make-up working days (调休), e.g. next year's (a new version)")

policy_router = CommandRouter(prefix="/api/v1", tags=["policies"], item_path="/policies/{policy_id}",
                              id_param=ConfigId, accepted=s.PolicyAccepted, callers=callers)
policy_router.command("define", c.DefinePolicy, s.PolicyBody,
                      "Create or replace an SLA policy (a new version; applies to clocks started afterwards)")

clock_router = CommandRouter(prefix="/api/v1", tags=["clocks"], item_path="/clocks/{request_id}", id_param=RequestId,
                             accepted=s.ClockAccepted, callers=callers)
clock_router.command("excusal", c.RequestExcusal, s.ExcusalRequestBody,
                     "Ask that a breach caused by the customer or a third party be excused (with a reason)")
clock_router.command("excusal/approve", c.ApproveExcusal, s.ExcusalDecisionBody,
                     "Excuse a breach (a manager other than the one who asked, with a reason): it leaves the "
                     "compliance figures and stays in the breach list")
clock_router.command("excusal/reject", c.RejectExcusal, s.ExcusalDecisionBody,
                     "Turn down a request to excuse a breach (with a reason): the breach counts")
clock_router.command("retarget", c.ChangeClockPolicy, s.PolicyChangeBody,
                     "Re-target a running clock under another policy (a manager, with a reason)",
                     "Re-target a running clock under another policy's current version, with a reason: new targets, "
                     "due times and thresholds from now on; the calendar, the business time already used and the "
                     "thresholds already announced stay. Who and why are kept in the clock's explanation "
                     "(`opsat.sla.clock.retargeted` with `by` and `reason`)")

OutageId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$",
                               description="the monitor's own id of the outage (a repeat is the same outage)")]
outage_router = CommandRouter(prefix="/api/v1", tags=["availability"], item_path="/outages/{outage_id}",
                              id_param=OutageId, accepted=s.OutageAccepted, callers=callers)
outage_router.command("report", c.ReportOutage, s.OutageBody,
                      "Report an outage of a business service (start, end when known, severity)")
outage_router.command("end", c.EndOutage, s.OutageEndBody, "Report the end of an ongoing outage")

router = APIRouter(prefix="/api/v1")


@router.get("/calendars", tags=["calendars"], summary="Every calendar at its current version")
async def list_calendars(queries: Queries, actor: Readers) -> list[dict[str, Any]]:
    return await queries.calendars()


@router.get("/calendars/{calendar_id}", tags=["calendars"], summary="A calendar at its current version")
async def get_calendar(calendar_id: ConfigId, queries: Queries, actor: Readers) -> dict[str, Any]:
    return await queries.calendar(calendar_id)


@router.get("/policies", tags=["policies"], summary="Every SLA policy at its current version")
async def list_policies(queries: Queries, actor: Readers) -> list[dict[str, Any]]:
    return await queries.policies()


@router.get("/clocks/{request_id}", tags=["clocks"], summary="A request's SLA state and its explanation",
            description="Targets, due times, remaining and paused business time, and every event that shaped the "
                        "clock with the intake event that caused it. Callers: requester (own organisation), staff, "
                        "auditor, service accounts.")
async def get_clock(request_id: RequestId, queries: Queries, actor: Readers,
                    as_of: Annotated[IsoDateTime | None, Query(description=(
                        "the state as it was at this instant (ISO 8601 with offset): only the events recorded by "
                        "then count"))] = None) -> dict[str, Any]:
    return await queries.clock(actor, request_id, datetime.now(UTC), as_of=aware(as_of, "as_of"))


@router.get("/at-risk", tags=["clocks"], summary="Open targets past a warning threshold, least time left first")
async def at_risk(queries: Queries, actor: Staff,
                  team: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")] = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100,
                  as_of: Annotated[IsoDateTime | None, Query(description=(
                      "the queue as it was at this instant (ISO 8601 with offset), folded from the clocks' "
                      "events recorded by then"))] = None) -> list[dict[str, Any]]:
    if as_of is not None:
        return await queries.at_risk_as_of(actor, aware(as_of, "as_of"), team=team, limit=limit)  # type: ignore[arg-type]
    return await queries.at_risk(actor, datetime.now(UTC), team=team, limit=limit)


@router.get("/breaches", tags=["clocks"], summary="Breached targets, newest first")
async def breaches(queries: Queries, actor: Staff, since: IsoDateTime | None = None, until: IsoDateTime | None = None,
                   team: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")] = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict[str, Any]]:
    return await queries.breaches(actor, since=aware(since, "since"), until=aware(until, "until"), team=team,
                                  limit=limit)


@router.get("/compliance", tags=["clocks"], summary="Compliance % of decided targets by period, team, priority...",
            description="A target is decided when met or breached; compliant when met on time. Cancelled requests "
                        "do not count.")
async def compliance(queries: Queries, actor: Staff,
                     target: Literal["response", "resolution"] = "resolution",
                     since: IsoDateTime | None = None, until: IsoDateTime | None = None,
                     group_by: Annotated[list[str] | None, Query(max_length=5)] = None,
                     period: str | None = None) -> list[dict[str, Any]]:
    for group in group_by or []:
        if group not in GROUPS:
            raise InvalidInput(f"group_by is one of {', '.join(GROUPS)}", field="group_by")
    return await queries.compliance(actor, target=target, since=aware(since, "since"),
                                    until=aware(until, "until"), group_by=list(dict.fromkeys(group_by or [])),
                                    period=check_period(period))


@router.get("/metrics/response-times", tags=["metrics"], summary="MTTA and MTTR by team, kind, priority...",
            description="Mean time to acknowledge (submit to accept or first staff reply) and to resolve (submit to "
                        "resolve), in wall-clock seconds, of the targets met in the period. Callers: staff, auditor.")
async def response_times(queries: Queries, actor: Staff,
                         since: Annotated[IsoDateTime | None, Query(description="inclusive, ISO 8601 with offset")] = None,
                         until: Annotated[IsoDateTime | None, Query(description="exclusive, ISO 8601 with offset")] = None,
                         group_by: Annotated[list[str] | None, Query(max_length=5)] = None) -> list[dict[str, Any]]:
    for group in group_by or []:
        if group not in GROUPS:
            raise InvalidInput(f"group_by is one of {', '.join(GROUPS)}", field="group_by")
    return await queries.response_times(actor, since=aware(since, "since"), until=aware(until, "until"),
                                        group_by=list(dict.fromkeys(group_by or [])))


@router.get("/metrics/first-contact-resolution", tags=["metrics"],
            summary="First-contact resolution rate by period, team, priority, kind...",
            description="Of the requests resolved in [since, until) (the resolution target met; cancelled requests do "
                        "not count; a reopened request counts when resolved again), the share resolved at first "
                        "contact: never reassigned to another team or person after it was first taken, never "
                        "reopened, and never waiting on the customer for information. `reassigned`, `reopened` and "
                        "`waited_on_customer` count the requests that missed it for each reason (one may have several)."
                        " Callers: staff, auditor.")
async def first_contact_resolution(
        queries: Queries, actor: Staff,
        since: Annotated[IsoDateTime | None, Query(description="inclusive, ISO 8601 with offset")] = None,
        until: Annotated[IsoDateTime | None, Query(description="exclusive, ISO 8601 with offset")] = None,
        group_by: Annotated[list[str] | None, Query(max_length=5)] = None,
        period: Annotated[str | None, Query(description="day, week, month, quarter or year")] = None
) -> list[dict[str, Any]]:
    for group in group_by or []:
        if group not in GROUPS:
            raise InvalidInput(f"group_by is one of {', '.join(GROUPS)}", field="group_by")
    return await queries.first_contact_resolution(actor, since=aware(since, "since"), until=aware(until, "until"),
                                                  group_by=list(dict.fromkeys(group_by or [])),
                                                  period=check_period(period))


@router.get("/availability", tags=["availability"], summary="Availability of each business service against its target",
            description="Over [since, until) (default: the last 30 days): the time no reported outage covered, as a "
                        "percentage, beside the service's target. Callers: staff, auditor.")
async def availability(queries: Queries, actor: Staff, request: Request,
                       service: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00]*$")] = None,
                       since: Annotated[IsoDateTime | None, Query(description="inclusive, ISO 8601 with offset")] = None,
                       until: Annotated[IsoDateTime | None, Query(description="exclusive, ISO 8601 with offset")] = None
                       ) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    until_ = aware(until, "until") or now
    since_ = aware(since, "since") or until_ - timedelta(days=30)
    if since_ >= until_:
        raise InvalidInput("since must be before until", field="since")
    targets = request.app.state.settings.business_services
    if service is not None and service not in targets:
        raise InvalidInput(f"{service!r} is not a business service", field="service")
    chosen = {service: targets[service]} if service is not None else dict(targets)
    return await queries.availability(chosen, since=since_, until=until_, now=now)


TeamFilter = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$", description="only this team")]


@router.get("/stalled", tags=["workload"], summary="Requests flagged as stalled, longest quiet first",
            description="A request being worked on (not awaiting the customer, resolved or cancelled) with no activity "
                        "in intake for its policy's `stall_after_seconds` of business time is flagged once per quiet "
                        "spell (event `opsat.sla.clock.stalled`); its next activity clears the flag "
                        "(`opsat.sla.clock.stall_cleared`). Callers: staff, auditor.")
async def stalled(queries: Queries, actor: Staff, team: TeamFilter = None,
                  priority: Annotated[Literal["P1", "P2", "P3", "P4"] | None, Query()] = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100,
                  offset: Annotated[int, Query(ge=0, le=100_000)] = 0) -> list[dict[str, Any]]:
    return await queries.stalled(actor, team=team, priority=priority, limit=limit, offset=offset)


@router.get("/workload", tags=["workload"], summary="Workload board per engineer and team",
            description="Per engineer (the request's assignee in intake) within a team, and per team: open requests "
                        "held (running or awaiting the customer), weighted by priority (P1 4, P2 3, P3 2, P4 1), how "
                        "many are paused, stalled or overdue, the business time left to their resolution due times "
                        "(negative when overdue), and the hours logged in intake over the days [since, until) against "
                        "the business hours the calendar offers in those days (per engineer; per team, the sum over "
                        "its engineers). Default: the last 7 days, on the default calendar. Callers: staff, auditor.",
            responses={404: {"description": "No calendar has this id"}})
async def workload(queries: Queries, actor: Staff, team: TeamFilter = None,
                   engineer: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$",
                                                         description="only this engineer")] = None,
                   since: Annotated[IsoDate | None, Query(description="first day counted (YYYY-MM-DD)")] = None,
                   until: Annotated[IsoDate | None, Query(description="the day after the last one counted")] = None,
                   calendar_id: Annotated[str, Query(min_length=1, max_length=31, pattern=r"^[a-z0-9][a-z0-9-]*$",
                                                     description="the calendar of hours available")] = "cn-default"
                   ) -> dict[str, Any]:
    now = datetime.now(UTC)
    until_ = until or now.date() + timedelta(days=1)
    since_ = since or until_ - timedelta(days=7)
    if since_ >= until_:
        raise InvalidInput("since must be before until", field="since")
    if (until_ - since_).days > 366:
        raise InvalidInput("a workload period is at most 366 days", field="until")
    return await queries.workload(actor, since=since_, until=until_, calendar_id=calendar_id, team=team,
                                  engineer=engineer, now=now)


@router.post("/what-if", tags=["clocks"], summary="Replay a period's clocks under a draft policy or calendar",
             description="Side-effect free: the clocks started in [since, until) are replayed with the instants of what "
                         "happened in intake (start, response, pauses, resolve, reopen, reassignment) under the draft "
                         "policy (and calendar, else each clock's own), and compared request by request with their "
                         "verdicts now (met on time, met late, breached, running), with the compliance of both. "
                         "Nothing is stored or published. Callers: team lead, manager, admin, auditor.")
async def what_if(body: s.WhatIfBody, queries: Queries,
                  actor: Annotated[Actor, Depends(require(Role.team_lead, Role.manager, Role.admin, Role.auditor))]
                  ) -> dict[str, Any]:
    if body.since >= body.until:
        raise InvalidInput("since must be before until", field="since")
    return await queries.what_if(actor, since=body.since, until=body.until, draft=body.policy.model_dump(),
                                 calendar=body.calendar.model_dump(exclude_none=True) if body.calendar else None,
                                 only_matching=body.only_matching, limit=body.limit, now=datetime.now(UTC))
