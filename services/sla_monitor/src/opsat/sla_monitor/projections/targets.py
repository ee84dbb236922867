"""The `sla_targets` projection: the clocks' own events -> one row per clock and target; and the outages
monitoring reported -> one row per outage (what availability reads)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.common.consumer import ReceivedEvent
from opsat.sla_monitor.domain import events as ev
from opsat.sla_monitor.projections.tables import metadata, outages, sla_targets

T = sla_targets.c


class TargetsProjection:
    name = "sla_targets"
    sources = ("sla",)
    metadata = metadata

    def __init__(self, topic: str) -> None:
        self.topics = [topic]

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
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
            case ev.ClockResumed():
                if event.reason == "reopened":
                    await change("resolution", status="running", met_at=None, on_time=None)
                await change(None, T.status == "paused", status="running")
                for name, due in event.due.items():
                    await change(name, due_at=due)
            case ev.ResolutionMet():
                await change("resolution", status="met", met_at=event.at, on_time=event.on_time)
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
            case ev.ClockCancelled():
                await change(None, T.status != "met", status="cancelled")
            case ev.ExcusalRequested():
                await change(event.target, excusal="requested")
            case ev.ExcusalApproved():
                await change(event.target, excusal="approved")
            case ev.ExcusalRejected():
                await change(event.target, excusal="rejected")
