"""The register and emergencies projection: this service's own events -> `risks`, `risk_versions`, `emergencies`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.common.consumer import ReceivedEvent
from opsat.risk.domain import events as ev
from opsat.risk.projections.tables import emergencies, metadata, risk_versions, risks

R, E = risks.c, emergencies.c
VERSIONED = [c.name for c in risk_versions.c if c.name not in ("risk_id", "version", "valid_from")]


class RegisterProjection:
    name = "risk_register"
    sources = ("risk",)
    metadata = metadata

    def __init__(self, topic: str) -> None:
        self.topics = [topic]

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        event = received.event
        if isinstance(event, ev.RiskEvent):
            await self._risk(conn, event, received.sequence)
        elif isinstance(event, ev.EmergencyEvent):
            await self._emergency(conn, event, received.sequence)

    async def _risk(self, conn: AsyncConnection, event: ev.RiskEvent, version: int) -> None:
        rid = event.risk_id
        values: dict[str, Any] = {"status": event.status}
        match event:
            case ev.RiskIdentified():
                await conn.execute(insert(risks).values(
                    risk_id=rid, version=version, status=event.status, title=event.title, category=event.category,
                    subject_type=event.subject_type, subject=event.subject, owner=event.owner, source=event.source,
                    rule_id=event.rule_id, description=event.description, evidence=[], assessments=0,
                    mitigation_progress=0, identified_at=event.at, updated_at=event.at).on_conflict_do_nothing())
            case ev.RiskAssessed():
                values.update(likelihood=event.likelihood, impact=event.impact, score=event.score, level=event.level,
                              assessments=R.assessments + 1)
            case ev.SignalRecorded():
                known = (await conn.execute(select(R.evidence).where(R.risk_id == rid))).scalar() or []
                values.update(evidence=list(dict.fromkeys([*known, *event.evidence])))
            case ev.MitigationPlanned():
                values.update(mitigation_plan=event.plan, mitigation_due_on=event.due_on, mitigation_progress=0,
                              owner=event.owner or R.owner)
            case ev.MitigationProgressed():
                values.update(mitigation_progress=event.percent)
        await conn.execute(update(risks).where(R.risk_id == rid).values(version=version, updated_at=event.at, **values))
        current = select(R.risk_id, literal(version), literal(event.at, risk_versions.c.valid_from.type),
                         *[R[name] for name in VERSIONED]).where(R.risk_id == rid)
        await conn.execute(insert(risk_versions).from_select(["risk_id", "version", "valid_from", *VERSIONED], current)
                           .on_conflict_do_nothing())

    async def _emergency(self, conn: AsyncConnection, event: ev.EmergencyEvent, version: int) -> None:
        eid = event.emergency_id
        match event:
            case ev.EmergencyActivated():
                await conn.execute(insert(emergencies).values(
                    emergency_id=eid, version=version, plan_id=event.plan_id, plan_version=event.plan_version,
                    title=event.title, reason=event.reason, team=event.team, service=event.service, status="active",
                    steps=[{**s, "completed_at": None, "completed_by": None, "note": None} for s in event.steps],
                    steps_total=len(event.steps), steps_done=0, resources=event.resources, trigger=event.trigger,
                    activated_at=event.at, updated_at=event.at).on_conflict_do_nothing())
                return
            case ev.StepCompleted():
                steps = (await conn.execute(select(E.steps).where(E.emergency_id == eid))).scalar() or []
                for step in steps:
                    if step["step_id"] == event.step_id:
                        step.update(completed_at=event.at.isoformat(), completed_by=event.by, note=event.note)
                values: dict[str, Any] = {"steps": steps, "steps_done": sum(1 for s in steps if s["completed_at"])}
            case ev.EmergencyStoodDown():
                values = {"status": "stood_down", "stood_down_at": event.at}
            case ev.ReviewRecorded():
                values = {"review": {"findings": event.findings, "recorded_at": event.at.isoformat(), "by": event.by,
                                     "actions": [{**a, "done_at": None} for a in event.actions]}}
            case ev.ReviewActionCompleted():
                review = (await conn.execute(select(E.review).where(E.emergency_id == eid))).scalar() or {}
                for action in review.get("actions", []):
                    if action["action_id"] == event.action_id:
                        action["done_at"] = event.at.isoformat()
                values = {"review": review}
            case _:
                return
        await conn.execute(update(emergencies).where(E.emergency_id == eid)
                           .values(version=version, updated_at=event.at, **values))
