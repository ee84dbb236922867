"""The `sla_targets` projection: the clocks' own events -> one row per clock and target, and the standing
stalled flags; the outages monitoring reported -> one row per outage (what availability reads); and, from
intake's events (tolerant readers), who holds each request, how its handling went and the time logged
(what the workload board and the first-contact resolution rate read)."""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar

from pydantic import AwareDatetime
from sqlalchemy import and_, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.common.consumer import ReceivedEvent
from opsat.common.reactions import ForeignEvent
from opsat.sla_monitor.domain import events as ev
from opsat.sla_monitor.projections.tables import (
    metadata,
    outages,
    request_work,
    sla_stalls,
    sla_targets,
    time_logs,
)

T = sla_targets.c
W = request_work.c


# --- the fields the workload board reads of intake's events ---------------------------------------------
class _Work(ForeignEvent):
    request_id: str
    at: AwareDatetime


class HolderAccepted(_Work):
    event_type: ClassVar[str] = "opsat.intake.request.accepted"
    team: str
    assignee: str | None = None


class HolderAssigned(_Work):
    event_type: ClassVar[str] = "opsat.intake.request.assigned"
    team: str
    assignee: str | None = None
    previous_team: str | None = None
    previous_assignee: str | None = None


class WorkReopened(_Work):
    event_type: ClassVar[str] = "opsat.intake.request.reopened"


class CustomerAsked(_Work):
    event_type: ClassVar[str] = "opsat.intake.request.customer_info_requested"


class TimeLogged(_Work):
    event_type: ClassVar[str] = "opsat.intake.request.time_logged"
    entry_id: str
    by: str
    minutes: int
    work_date: date


WORK_READS: tuple[type[ForeignEvent], ...] = (HolderAccepted, HolderAssigned, WorkReopened, CustomerAsked, TimeLogged)


def is_reassignment(event: HolderAssigned) -> bool:
    """Moved away from a team or a person that held it; a first assignee within the same team is no move."""
    return ((event.previous_team is not None and event.previous_team != event.team)
            or (event.previous_assignee is not None and event.previous_assignee != event.assignee))


class TargetsProjection:
    name = "sla_targets"
    metadata = metadata

    sources = ("sla", "intake")

    def __init__(self, *topics: str) -> None:
        self.topics = list(topics)

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        if received.event is None:  # another service's event
            await self._apply_work(conn, received)
            return
        event = received.event
        if isinstance(event, ev.OutageReported):
            await conn.execute(insert(outages).values(
                outage_id=event.outage_id, service=event.service, severity=event.severity,
                started_at=event.started_at, ended_at=event.ended_at).on_conflict_do_nothing())
            return
        if isinstance(event, ev.OutageEnded):
            await conn.execute(update(outages).where(outages.c.outage_id == event.outage_id)
                               .values(ended_at=event.ended_at))
            return
        if not isinstance(event, ev.ClockEvent):
            return
        rid = event.request_id

        async def change(target: str | None, where: Any = None, **values: Any) -> None:
            condition = T.request_id == rid
            if target is not None:
                condition = and_(condition, T.target == target)
            if where is not None:
                condition = and_(condition, where)
            await conn.execute(update(sla_targets).where(condition).values(updated_at=event.at, **values))

        match event:
            case ev.ClockStarted():
                rows = [{"request_id": rid, "target": name, "organisation_id": event.organisation_id,
                         "kind": event.kind, "priority": event.priority, "customer_tier": event.customer_tier,
                         "service": event.service, "team": event.team, "policy_id": event.policy_id,
                         "policy_version": event.policy_version, "calendar_id": event.calendar_id,
                         "status": "running", "started_at": event.at, "due_at": event.due[name],
                         "updated_at": event.at} for name in ("response", "resolution")]
                await conn.execute(insert(sla_targets).on_conflict_do_nothing(), rows)
            case ev.ResponseMet():
                await change("response", status="met", met_at=event.at, on_time=event.on_time)
                if event.team:
                    await change(None, team=event.team)
            case ev.ClockPaused():
                await change(None, T.status == "running", status="paused")
                # awaiting the customer is no stall (the clock dropped the flag too)
                await conn.execute(delete(sla_stalls).where(sla_stalls.c.request_id == rid))
            case ev.ClockResumed():
                if event.reason == "reopened":
                    await change("resolution", status="running", met_at=None, on_time=None)
                await change(None, T.status == "paused", status="running")
                for name, due in event.due.items():
                    await change(name, due_at=due)
            case ev.ResolutionMet():
                await change("resolution", status="met", met_at=event.at, on_time=event.on_time)
                await conn.execute(delete(sla_stalls).where(sla_stalls.c.request_id == rid))
            case ev.ThresholdReached():
                await change(event.target, warned_percent=func.greatest(func.coalesce(T.warned_percent, 0),
                                                                        event.percent),
                             escalated_to=event.escalate_to or T.escalated_to)
            case ev.TargetBreached():
                await change(event.target, breached_at=event.at, escalated_to=event.escalate_to or T.escalated_to)
            case ev.ClockEscalated():
                await change(event.target, escalated_to=event.escalate_to)
            case ev.ClockRetargeted():
                await change(None, priority=event.priority, policy_id=event.policy_id,
                             policy_version=event.policy_version)
                for name, due in event.due.items():
                    await change(name, due_at=due)
            case ev.TeamChanged():
                await change(None, team=event.team)
                await conn.execute(update(sla_stalls).where(sla_stalls.c.request_id == rid).values(team=event.team))
            case ev.ClockCancelled():
                await change(None, T.status != "met", status="cancelled")
                await conn.execute(delete(sla_stalls).where(sla_stalls.c.request_id == rid))
            case ev.ClockStalled():
                row = select(T.request_id, T.organisation_id, T.team, T.priority, T.kind, T.service,
                             literal(event.quiet_since).label("quiet_since"), literal(event.at).label("stalled_at"),
                             literal(event.quiet_seconds).label("quiet_seconds")
                             ).where(T.request_id == rid, T.target == "resolution")
                await conn.execute(insert(sla_stalls).from_select(
                    ["request_id", "organisation_id", "team", "priority", "kind", "service", "quiet_since",
                     "stalled_at", "quiet_seconds"], row).on_conflict_do_nothing())
            case ev.StallCleared():
                await conn.execute(delete(sla_stalls).where(sla_stalls.c.request_id == rid))
            case ev.ExcusalRequested():
                await change(event.target, excusal="requested")
            case ev.ExcusalApproved():
                await change(event.target, excusal="approved")
            case ev.ExcusalRejected():
                await change(event.target, excusal="rejected")

    async def _apply_work(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        read = next((cls.read(received) for cls in WORK_READS if cls.matches(received)), None)
        if read is None:
            return
        rid = read.request_id  # type: ignore[attr-defined]
        at = read.at  # type: ignore[attr-defined]
        upsert = insert(request_work)
        match read:
            case HolderAccepted():
                await conn.execute(upsert.values(request_id=rid, team=read.team, assignee=read.assignee, updated_at=at)
                                   .on_conflict_do_update(index_elements=[W.request_id], set_={
                                       "team": read.team, "assignee": read.assignee, "updated_at": at}))
            case HolderAssigned():
                moved = int(is_reassignment(read))
                await conn.execute(upsert.values(request_id=rid, team=read.team, assignee=read.assignee,
                                                 reassignments=moved, updated_at=at)
                                   .on_conflict_do_update(index_elements=[W.request_id], set_={
                                       "team": read.team, "assignee": read.assignee, "updated_at": at,
                                       "reassignments": W.reassignments + moved}))
            case WorkReopened() | CustomerAsked():
                column = "reopens" if isinstance(read, WorkReopened) else "customer_waits"
                await conn.execute(upsert.values(request_id=rid, updated_at=at, **{column: 1})
                                   .on_conflict_do_update(index_elements=[W.request_id], set_={
                                       column: getattr(W, column) + 1, "updated_at": at}))
            case TimeLogged():
                team = select(W.team).where(W.request_id == rid).scalar_subquery()
                await conn.execute(insert(time_logs).values(
                    entry_id=read.entry_id, request_id=rid, engineer=read.by, team=team, minutes=read.minutes,
                    work_date=read.work_date).on_conflict_do_nothing())
