"""Events the risk service publishes on `opsat.risk.events`: the register, signal rules, emergency plans,
emergencies and on-call rotas.

Risk events carry the risk's status after them, so that a reader needs no earlier event to place the risk in
its life cycle; assessments carry the whole score (likelihood, impact, score, level).
"""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar

from opsat.common.domain import DomainEvent, Instant


def _type(name: str) -> str:
    return f"opsat.risk.{name}"


# --- the register ----------------------------------------------------------------------------------------
class RiskEvent(DomainEvent):
    risk_id: str
    at: Instant
    by: str
    status: str  # identified | assessed | mitigating | accepted | closed


class RiskIdentified(RiskEvent):
    """A risk entered the register, by hand or from a signal rule (`rule_id`, `subject_type`, `subject`)."""

    event_type: ClassVar[str] = _type("risk.identified")
    title: str
    category: str
    description: str
    subject_type: str  # team | service
    subject: str
    owner: str | None = None
    source: str = "manual"  # manual | signal
    rule_id: str | None = None


class RiskAssessed(RiskEvent):
    """An assessment or reassessment: every one is kept; the latest is the risk's score."""

    event_type: ClassVar[str] = _type("risk.assessed")
    likelihood: int
    impact: int
    score: int
    level: str
    rationale: str


class SignalRecorded(RiskEvent):
    """A signal rule fired for the risk's subject; `evidence` are the ids of the upstream events behind it not
    recorded on the risk before (the risk's evidence is the union over its signals)."""

    event_type: ClassVar[str] = _type("risk.signal_recorded")
    rule_id: str
    rule_version: int
    observed: float  # the count in the window, or the mean over the last N
    evidence: list[str]


class MitigationPlanned(RiskEvent):
    event_type: ClassVar[str] = _type("risk.mitigation_planned")
    plan: str
    due_on: date
    owner: str | None = None


class MitigationProgressed(RiskEvent):
    event_type: ClassVar[str] = _type("risk.mitigation_progressed")
    percent: int
    note: str


class RiskAccepted(RiskEvent):
    """The residual risk is tolerated (a risk officer's decision); the risk leaves the open register."""

    event_type: ClassVar[str] = _type("risk.accepted")
    rationale: str


class RiskClosed(RiskEvent):
    event_type: ClassVar[str] = _type("risk.closed")
    reason: str


RISK_EVENTS: tuple[type[RiskEvent], ...] = (RiskIdentified, RiskAssessed, SignalRecorded, MitigationPlanned,
                                            MitigationProgressed, RiskAccepted, RiskClosed)


# --- configuration: signal rules and emergency plans -------------------------------------------------------
class RuleDefined(DomainEvent):
    """A signal rule was created or replaced; `rule` is the whole spec of this version."""

    event_type: ClassVar[str] = _type("rule.defined")
    rule_id: str
    version: int
    rule: dict[str, Any]
    at: Instant
    by: str


class PlanDefined(DomainEvent):
    """An emergency plan was created or replaced; `plan` is the whole spec (triggers, steps, standby resources)."""

    event_type: ClassVar[str] = _type("plan.defined")
    plan_id: str
    version: int
    plan: dict[str, Any]
    at: Instant
    by: str


# --- emergencies ---------------------------------------------------------------------------------------
class EmergencyEvent(DomainEvent):
    emergency_id: str
    at: Instant
    by: str


class EmergencyActivated(EmergencyEvent):
    """A plan was activated; `steps` are the plan's steps, each with the person on call for its role then."""

    event_type: ClassVar[str] = _type("emergency.activated")
    plan_id: str
    plan_version: int
    title: str
    reason: str
    team: str | None = None
    service: str | None = None
    steps: list[dict[str, Any]]  # [{"step_id", "title", "role", "assignee"}]
    resources: list[dict[str, Any]] = []
    trigger: dict[str, Any] = {}  # {"event_id", "event_type", "request_id", "priority"} when automatic


class StepCompleted(EmergencyEvent):
    event_type: ClassVar[str] = _type("emergency.step_completed")
    step_id: str
    note: str


class EmergencyStoodDown(EmergencyEvent):
    event_type: ClassVar[str] = _type("emergency.stood_down")
    summary: str


class ReviewRecorded(EmergencyEvent):
    """The post-incident review (复盘): findings, and actions that are tracked until done."""

    event_type: ClassVar[str] = _type("emergency.review_recorded")
    findings: list[str]
    actions: list[dict[str, Any]]  # [{"action_id", "title", "owner", "due_on"}]


class ReviewActionCompleted(EmergencyEvent):
    event_type: ClassVar[str] = _type("emergency.review_action_completed")
    action_id: str
    note: str


EMERGENCY_EVENTS: tuple[type[EmergencyEvent], ...] = (EmergencyActivated, StepCompleted, EmergencyStoodDown,
                                                      ReviewRecorded, ReviewActionCompleted)


# --- on-call rotas -------------------------------------------------------------------------------------
class RotaDefined(DomainEvent):
    """A rota was created or replaced; `rota` is its spec (team, role, time zone, hand-over, members)."""

    event_type: ClassVar[str] = _type("rota.defined")
    rota_id: str
    version: int
    rota: dict[str, Any]
    at: Instant
    by: str


class RotaOverrideAdded(DomainEvent):
    """Someone else is on call from `start` to `end` (overrides of one rota never overlap)."""

    event_type: ClassVar[str] = _type("rota.override_added")
    rota_id: str
    override_id: str
    person: str
    start: Instant
    end: Instant
    reason: str
    at: Instant
    by: str


RISK_SERVICE_EVENTS: tuple[type[DomainEvent], ...] = (*RISK_EVENTS, RuleDefined, PlanDefined, *EMERGENCY_EVENTS,
                                                      RotaDefined, RotaOverrideAdded)
