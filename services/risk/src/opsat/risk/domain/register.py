"""The risk register (handbook 6.2): a risk's life cycle and its 5×5 assessment.

identified → assessed → mitigating → (accepted | closed). Every assessment is an event, so every
reassessment is kept; a signal on an open risk re-scores it instead of opening a second one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from opsat.common.domain import Conflict, DomainEvent, InvalidInput, InvalidTransition
from opsat.risk.domain import events as ev

CATEGORIES = ("security", "compliance", "capacity", "vendor", "personnel", "technical", "service_quality")
SUBJECT_TYPES = ("team", "service")
OPEN = ("identified", "assessed", "mitigating")
TERMINAL = ("accepted", "closed")
_NAME = re.compile(r"^[^\x00]{1,200}$")


@dataclass(frozen=True)
class Levels:
    """Lowest score of each level above `low` (DOMAIN.md: medium 5-9, high 10-16, critical 17-25)."""

    medium: int = 5
    high: int = 10
    critical: int = 17

    @classmethod
    def from_mapping(cls, values: Mapping[str, int]) -> Levels:
        levels = cls(**values)
        if not 1 < levels.medium < levels.high < levels.critical <= 25:
            raise ValueError("risk level thresholds need 1 < medium < high < critical <= 25")
        return levels

    def level(self, score: int) -> str:
        if score >= self.critical:
            return "critical"
        if score >= self.high:
            return "high"
        return "medium" if score >= self.medium else "low"


def check_scale(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise InvalidInput(f"{field} is a whole number from 1 to 5", field=field)
    return value


@dataclass(frozen=True)
class Risk:
    risk_id: str
    status: str
    title: str
    category: str
    subject_type: str
    subject: str
    owner: str | None = None
    source: str = "manual"
    rule_id: str | None = None
    likelihood: int | None = None
    impact: int | None = None
    score: int | None = None
    level: str | None = None
    assessments: int = 0
    evidence: tuple[str, ...] = ()
    mitigation: str | None = None
    progress: int = 0

    @property
    def open(self) -> bool:
        return self.status in OPEN


def evolve(state: Risk | None, event: DomainEvent) -> Risk:
    match event:
        case ev.RiskIdentified():
            return Risk(risk_id=event.risk_id, status=event.status,
                        title=event.title, category=event.category, subject_type=event.subject_type,
                        subject=event.subject, owner=event.owner, source=event.source, rule_id=event.rule_id)
    assert state is not None, f"{event.event_type} before the risk was identified"
    state = replace(state, status=getattr(event, "status", state.status))
    match event:
        case ev.RiskAssessed():
            return replace(state, likelihood=event.likelihood, impact=event.impact, score=event.score,
                           level=event.level, assessments=state.assessments + 1)
        case ev.SignalRecorded():
            return replace(state, evidence=tuple(dict.fromkeys((*state.evidence, *event.evidence))))
        case ev.MitigationPlanned():
            return replace(state, mitigation=event.plan, owner=event.owner or state.owner, progress=0)
        case ev.MitigationProgressed():
            return replace(state, progress=event.percent)
    return state


def _text(value: Any, field: str, max_length: int = 2000) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_length or "\x00" in value:
        raise InvalidInput(f"{field} is required text of at most {max_length} characters", field=field)
    return value


def _open(state: Risk | None, action: str) -> Risk:
    assert state is not None  # the handler answers 404 for an unknown risk
    if not state.open:
        raise InvalidTransition(f"a risk that is {state.status} cannot be {action}", field="status")
    return state


def _assessment(state: Risk, likelihood: Any, impact: Any, rationale: str, levels: Levels, now: Any, by: str,
                status: str) -> ev.RiskAssessed:
    likelihood, impact = check_scale(likelihood, "likelihood"), check_scale(impact, "impact")
    score = likelihood * impact
    return ev.RiskAssessed(risk_id=state.risk_id, at=now, by=by, status=status, likelihood=likelihood,
                           impact=impact, score=score, level=levels.level(score), rationale=rationale)


def identify(command: Any, levels: Levels, now: Any, by: str) -> list[DomainEvent]:
    if command.category not in CATEGORIES:
        raise InvalidInput(f"category is one of {', '.join(CATEGORIES)}", field="category")
    if command.subject_type not in SUBJECT_TYPES:
        raise InvalidInput("subject_type is team or service", field="subject_type")
    identified = ev.RiskIdentified(risk_id=command.risk_id, at=now, by=by, status="identified",
                                   title=_text(command.title, "title", 200), category=command.category,
                                   description=_text(command.description, "description"),
                                   subject_type=command.subject_type, subject=_text(command.subject, "subject", 200),
                                   owner=command.owner)
    if command.likelihood is None and command.impact is None:
        return [identified]
    state = evolve(None, identified)
    return [identified, _assessment(state, command.likelihood, command.impact, "initial assessment", levels, now, by,
                                    "assessed")]


def assess(state: Risk | None, command: Any, levels: Levels, now: Any, by: str) -> list[DomainEvent]:
    state = _open(state, "reassessed")
    status = "mitigating" if state.status == "mitigating" else "assessed"
    return [_assessment(state, command.likelihood, command.impact, _text(command.rationale, "rationale"), levels, now,
                        by, status)]


def plan_mitigation(state: Risk | None, command: Any, today: date, now: Any, by: str) -> list[DomainEvent]:
    state = _open(state, "mitigated")
    if state.score is None:
        raise InvalidTransition("assess the risk before planning its mitigation", field="status")
    if command.due_on < today:
        raise InvalidInput("due_on lies in the past", field="due_on")
    return [ev.MitigationPlanned(risk_id=state.risk_id, at=now, by=by, status="mitigating",
                                 plan=_text(command.plan, "plan"), due_on=command.due_on, owner=command.owner)]


def progress(state: Risk | None, command: Any, now: Any, by: str) -> list[DomainEvent]:
    state = _open(state, "progressed")
    if state.status != "mitigating":
        raise InvalidTransition("the risk has no mitigation plan", field="status")
    percent = command.percent
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise InvalidInput("percent is a whole number from 0 to 100", field="percent")
    return [ev.MitigationProgressed(risk_id=state.risk_id, at=now, by=by, status="mitigating", percent=percent,
                                    note=_text(command.note, "note"))]


def accept(state: Risk | None, command: Any, now: Any, by: str) -> list[DomainEvent]:
    state = _open(state, "accepted")
    if state.score is None:
        raise InvalidTransition("assess the risk before accepting it", field="status")
    return [ev.RiskAccepted(risk_id=state.risk_id, at=now, by=by, status="accepted",
                            rationale=_text(command.rationale, "rationale"))]


def close(state: Risk | None, command: Any, now: Any, by: str) -> list[DomainEvent]:
    state = _open(state, "closed")
    return [ev.RiskClosed(risk_id=state.risk_id, at=now, by=by, status="closed", reason=_text(command.reason, "reason"))]


def record_signal(state: Risk | None, command: Any, levels: Levels, now: Any, by: str) -> list[DomainEvent]:
    """A rule fired for a subject: identify and assess a new risk, or re-score the open one. Evidence already
    recorded adds nothing (a replayed upstream topic changes nothing)."""
    signal = command.signal
    if state is None:
        identified = ev.RiskIdentified(
            risk_id=command.risk_id, at=now, by=by, status="identified", title=signal.title,
            category=signal.category, description=signal.description, subject_type=signal.subject_type,
            subject=signal.subject, source="signal", rule_id=signal.rule_id)
        state = evolve(None, identified)
        events: list[DomainEvent] = [identified]
    elif not state.open:
        raise Conflict(f"risk {state.risk_id} is {state.status}; a signal raises a new risk", field="risk_id")
    elif (state.subject_type, state.subject) != (signal.subject_type, signal.subject):
        raise Conflict("the signal's subject is not the risk's", field="subject")
    elif set(signal.evidence) <= set(state.evidence):
        raise Conflict("the signal's evidence is already recorded", field="evidence", code="already_recorded")
    else:
        events = []
    status = "mitigating" if state.status == "mitigating" else "assessed"
    new_evidence = [e for e in signal.evidence if e not in set(state.evidence)]  # the risk keeps the union
    events.append(ev.SignalRecorded(risk_id=state.risk_id, at=now, by=by, status=status, rule_id=signal.rule_id,
                                    rule_version=signal.rule_version, observed=signal.observed,
                                    evidence=new_evidence))
    if (signal.likelihood, signal.impact) != (state.likelihood, state.impact):
        events.append(_assessment(state, signal.likelihood, signal.impact,
                                  f"signal {signal.rule_id} v{signal.rule_version}: {signal.observed:g} observed",
                                  levels, now, by, status))
    return events
