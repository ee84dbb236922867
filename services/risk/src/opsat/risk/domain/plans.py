"""Emergency plans (handbook 6.3) as versioned configuration, and the emergencies they turn into.

A plan names trigger conditions (priorities, sources, teams, services: empty = any), ordered steps with the
role that carries each out, and the standby resources (6.4) it may call on. An activation copies the plan's
steps with the person on call for each step's role at that instant; each step is completed once, the
emergency is stood down once, and its post-incident review (复盘) lists findings and tracked actions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from opsat.common.domain import AlreadyExists, Conflict, DomainEvent, InvalidInput, InvalidTransition
from opsat.risk.domain import events as ev
from opsat.risk.domain.commands import plain

CONFIG_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
TRIGGER_SOURCES = ("breach", "incident", "manual")
RESOURCE_KINDS = ("spare_capacity", "vendor_contact", "backup_system", "other")
_ROLE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def _text(value: Any, field: str, max_length: int = 2000) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_length or "\x00" in value:
        raise InvalidInput(f"{field} is required text of at most {max_length} characters", field=field)
    return value


def _list(value: Any, field: str, max_items: int = 100) -> list[Any]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidInput(f"{field} must be a list", field=field)
    items = list(value)
    if len(items) > max_items:
        raise InvalidInput(f"{field} has at most {max_items} items", field=field)
    return items


@dataclass(frozen=True)
class Plan:
    plan_id: str
    version: int
    title: str
    steps: tuple[dict[str, str], ...]  # {"step_id", "title", "role"}
    priorities: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    resources: tuple[dict[str, str], ...] = ()

    def to_spec(self) -> dict[str, Any]:
        return {"title": self.title, "steps": [dict(s) for s in self.steps],
                "triggers": {"priorities": sorted(self.priorities), "sources": sorted(self.sources),
                             "teams": sorted(self.teams), "services": sorted(self.services)},
                "resources": [dict(r) for r in self.resources]}

    @classmethod
    def from_spec(cls, plan_id: str, version: int, spec: Mapping[str, Any]) -> Plan:
        if not CONFIG_ID.match(plan_id):
            raise InvalidInput("a plan id is a slug: a-z, 0-9 and '-', at most 41 characters", field="plan_id")
        steps = []
        for step in _list(spec.get("steps"), "steps"):
            if not isinstance(step, Mapping) or not set(step) <= {"step_id", "title", "role"}:
                raise InvalidInput("a step is {step_id, title, role}", field="steps")
            step_id, role = step.get("step_id"), step.get("role")
            if not isinstance(step_id, str) or not CONFIG_ID.match(step_id):
                raise InvalidInput("a step id is a slug", field="steps")
            if not isinstance(role, str) or not _ROLE.match(role):
                raise InvalidInput(f"{role!r} is not a role name", field="steps")
            steps.append({"step_id": step_id, "title": _text(step.get("title"), "steps", 200), "role": role})
        if not steps:
            raise InvalidInput("a plan has at least one step", field="steps")
        if len({s["step_id"] for s in steps}) != len(steps):
            raise InvalidInput("step ids are unique within a plan", field="steps")
        triggers = spec.get("triggers", {})
        if not isinstance(triggers, Mapping) or not set(triggers) <= {"priorities", "sources", "teams", "services"}:
            raise InvalidInput("triggers is {priorities, sources, teams, services}", field="triggers")
        chosen = {}
        for name, allowed in (("priorities", ("P1", "P2", "P3", "P4")), ("sources", TRIGGER_SOURCES),
                              ("teams", None), ("services", None)):
            values = frozenset(_list(triggers.get(name, ()), "triggers"))
            if any(not isinstance(v, str) or not v or len(v) > 100 or (allowed and v not in allowed) for v in values):
                raise InvalidInput(f"triggers.{name} holds an unknown value", field="triggers")
            chosen[name] = values
        resources = []
        for resource in _list(spec.get("resources", ()), "resources"):
            if not isinstance(resource, Mapping) or not set(resource) <= {"kind", "name", "contact"}:
                raise InvalidInput("a standby resource is {kind, name, contact}", field="resources")
            if resource.get("kind") not in RESOURCE_KINDS:
                raise InvalidInput(f"a resource's kind is one of {', '.join(RESOURCE_KINDS)}", field="resources")
            contact = resource.get("contact", "")
            if not isinstance(contact, str) or len(contact) > 500:
                raise InvalidInput("a resource's contact is text", field="resources")
            resources.append({"kind": resource["kind"], "name": _text(resource.get("name"), "resources", 200),
                              "contact": contact})
        return cls(plan_id=plan_id, version=version, title=_text(spec.get("title"), "title", 200), steps=tuple(steps),
                   resources=tuple(resources), **chosen)

    def matches(self, source: str, priority: str | None, team: str | None, service: str | None) -> bool:
        return all(not allowed or value in allowed for allowed, value in (
            (self.sources, source), (self.priorities, priority), (self.teams, team), (self.services, service)))

    @property
    def specificity(self) -> int:
        return sum(1 for s in (self.priorities, self.sources, self.teams, self.services) if s)


def choose(plans: Iterable[Plan], source: str, priority: str | None, team: str | None,
           service: str | None) -> Plan | None:
    """The matching plan naming the most conditions (then the lowest id); None when none matches."""
    matching = [p for p in plans if p.matches(source, priority, team, service)]
    return min(matching, key=lambda p: (-p.specificity, p.plan_id)) if matching else None


def evolve_plan(state: Plan | None, event: DomainEvent) -> Plan:
    match event:
        case ev.PlanDefined():
            return Plan.from_spec(event.plan_id, event.version, event.plan)
    raise Conflict("this id is not an emergency plan", field="plan_id", code="id_taken")


def define_plan(state: Plan | None, command: Any, now: Any, by: str) -> list[DomainEvent]:
    plan = Plan.from_spec(command.plan_id, (state.version if state else 0) + 1, command.spec())
    return [ev.PlanDefined(plan_id=plan.plan_id, version=plan.version, plan=plan.to_spec(), at=now, by=by)]


# --- emergencies -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Emergency:
    emergency_id: str
    plan_id: str
    status: str  # active | stood_down
    steps: tuple[str, ...]
    completed: frozenset[str] = frozenset()
    reviewed: bool = False
    actions: tuple[str, ...] = ()
    actions_done: frozenset[str] = field(default_factory=frozenset)


def evolve(state: Emergency | None, event: DomainEvent) -> Emergency:
    match event:
        case ev.EmergencyActivated():
            return Emergency(emergency_id=event.emergency_id, plan_id=event.plan_id,
                             status="active", steps=tuple(s["step_id"] for s in event.steps))
    assert state is not None
    match event:
        case ev.StepCompleted():
            return replace(state, completed=state.completed | {event.step_id})
        case ev.EmergencyStoodDown():
            return replace(state, status="stood_down")
        case ev.ReviewRecorded():
            return replace(state, reviewed=True, actions=tuple(a["action_id"] for a in event.actions))
        case ev.ReviewActionCompleted():
            return replace(state, actions_done=state.actions_done | {event.action_id})
    return state


def activate(state: Emergency | None, command: Any, now: Any, by: str) -> list[DomainEvent]:
    """`command.plan` is the plan as it is now and `command.on_call` role -> person at `now`."""
    if state is not None:
        raise AlreadyExists(f"emergency {state.emergency_id} is already activated (plan {state.plan_id})",
                            field="emergency_id")
    plan: Plan = command.plan
    steps = [{**s, "assignee": command.on_call.get(s["role"])} for s in plan.steps]
    return [ev.EmergencyActivated(emergency_id=command.emergency_id, at=now, by=by, plan_id=plan.plan_id,
                                  plan_version=plan.version, title=plan.title, reason=_text(command.reason, "reason"),
                                  team=command.team, service=command.service, steps=steps,
                                  resources=[dict(r) for r in plan.resources], trigger=dict(command.trigger or {}))]


def complete_step(state: Emergency | None, command: Any, now: Any, by: str) -> list[DomainEvent]:
    assert state is not None
    if command.step_id not in state.steps:
        raise InvalidInput(f"plan {state.plan_id} has no step {command.step_id!r}; its steps: "
                           f"{', '.join(state.steps)}", field="step_id")
    if command.step_id in state.completed:
        raise Conflict(f"step {command.step_id} is already completed", field="step_id", code="step_completed")
    if state.status != "active":
        raise InvalidTransition("the emergency was stood down", field="status")
    return [ev.StepCompleted(emergency_id=state.emergency_id, at=now, by=by, step_id=command.step_id,
                             note=command.note)]


def stand_down(state: Emergency | None, command: Any, now: Any, by: str) -> list[DomainEvent]:
    assert state is not None
    if state.status != "active":
        raise Conflict("the emergency is already stood down", field="status", code="stood_down")
    return [ev.EmergencyStoodDown(emergency_id=state.emergency_id, at=now, by=by,
                                  summary=_text(command.summary, "summary"))]


def record_review(state: Emergency | None, command: Any, now: Any, by: str) -> list[DomainEvent]:
    assert state is not None
    if state.status != "stood_down":
        raise InvalidTransition("the review follows the stand-down", field="status")
    if state.reviewed:
        raise Conflict("the review is already recorded", field="status", code="reviewed")
    findings = [_text(f, "findings") for f in _list(command.findings, "findings")]
    if not findings:
        raise InvalidInput("a review has at least one finding", field="findings")
    actions = []
    for i, action in enumerate(_list(plain(command.actions), "actions"), start=1):
        if not isinstance(action, Mapping) or not set(action) <= {"title", "owner", "due_on"}:
            raise InvalidInput("an action is {title, owner, due_on}", field="actions")
        due = action.get("due_on")
        try:
            due_on = date.fromisoformat(due) if isinstance(due, str) else None
        except ValueError:
            due_on = None
        if due_on is None:
            raise InvalidInput("an action's due_on is a date, YYYY-MM-DD", field="actions")
        actions.append({"action_id": f"a{i}", "title": _text(action.get("title"), "actions", 200),
                        "owner": _text(action.get("owner"), "actions", 200), "due_on": due_on.isoformat()})
    return [ev.ReviewRecorded(emergency_id=state.emergency_id, at=now, by=by, findings=findings, actions=actions)]


def complete_action(state: Emergency | None, command: Any, now: Any, by: str) -> list[DomainEvent]:
    assert state is not None
    if command.action_id not in state.actions:
        raise InvalidInput(f"the review has no action {command.action_id!r}", field="action_id")
    if command.action_id in state.actions_done:
        raise Conflict(f"action {command.action_id} is already done", field="action_id", code="action_done")
    return [ev.ReviewActionCompleted(emergency_id=state.emergency_id, at=now, by=by, action_id=command.action_id,
                                     note=command.note)]


# DOMAIN.md: a major incident (P1) activates a plan; this one ships as version 1 and may be replaced.
DEFAULT_PLANS: dict[str, Plan] = {p.plan_id: p for p in (
    Plan.from_spec("p1-major-incident", 1, {
        "title": "Major incident (P1)",
        "triggers": {"priorities": ["P1"], "sources": ["breach", "incident"]},
        "steps": [{"step_id": "triage", "title": "Confirm impact and start the incident bridge",
                   "role": "on_call_engineer"},
                  {"step_id": "command", "title": "Take incident command, decide on workarounds",
                   "role": "duty_manager"},
                  {"step_id": "communicate", "title": "Inform affected customers and stakeholders",
                   "role": "duty_manager"},
                  {"step_id": "restore", "title": "Restore service and verify with the customer",
                   "role": "on_call_engineer"}]}),
)}
