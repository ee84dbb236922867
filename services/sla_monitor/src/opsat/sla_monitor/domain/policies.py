"""SLA policies as versioned configuration, and which policy a request gets.

A policy matches by kind, priority, customer tier and (optionally) business service; an empty list
matches anything. Of the matching policies the most specific (most criteria named) wins, then the
lowest id. DOMAIN.md's defaults ship as version 1 of `p1`..`p4`; a business day is 9 business hours
(09:00-18:00 on the default calendar).

`stall_after` (DOMAIN 3.4) is how long a running request may go without any activity, in business time
on the policy's calendar, before it is flagged as stalled (default: one business day). `next_reply`
(optional) is the periodic update target: after the first response, staff owe the customer a public update
at least this often (business time, paused time excluded) until the request is resolved. `ola` (optional, with per-team `ola_teams` overrides) is the operational level
target of the team holding a request: business time (paused time excluded) from when that team took the
request, beside the customer-facing targets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from opsat.common.domain import Conflict, DomainEvent, InvalidInput
from opsat.sla_monitor.domain import events as ev

KINDS = frozenset({"incident", "service_request", "change", "problem", "consultation", "complaint"})
PRIORITIES = frozenset({"P1", "P2", "P3", "P4"})
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
# Configuration ids are short slugs: never a request id (a UUID), so the streams cannot collide.
CONFIG_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
DEFAULT_ESCALATIONS = ((50, "team_lead"), (100, "manager"), (150, "director"))
_MIN, _HOUR = 60.0, 3600.0
_BUSINESS_DAY = 9 * _HOUR
DEFAULT_STALL_SECONDS = _BUSINESS_DAY


@dataclass(frozen=True)
class Policy:
    policy_id: str
    version: int
    first_response: timedelta
    resolution: timedelta
    calendar_id: str = "cn-default"
    kinds: frozenset[str] = frozenset()
    priorities: frozenset[str] = frozenset()
    customer_tiers: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    warning_thresholds: tuple[int, ...] = (50, 80)
    escalations: tuple[tuple[int, str], ...] = DEFAULT_ESCALATIONS
    stall_after: timedelta = timedelta(seconds=DEFAULT_STALL_SECONDS)
    next_reply: timedelta | None = None
    ola: timedelta | None = None
    ola_teams: tuple[tuple[str, timedelta], ...] = ()

    def matches(self, kind: str, priority: str, tier: str, service: str | None) -> bool:
        return all(not allowed or value in allowed for allowed, value in (
            (self.kinds, kind), (self.priorities, priority), (self.customer_tiers, tier), (self.services, service)))

    @property
    def specificity(self) -> int:
        return sum(1 for s in (self.kinds, self.priorities, self.customer_tiers, self.services) if s)

    def to_spec(self) -> dict[str, Any]:
        return {"first_response_seconds": self.first_response.total_seconds(),
                "resolution_seconds": self.resolution.total_seconds(), "calendar_id": self.calendar_id,
                "kinds": sorted(self.kinds), "priorities": sorted(self.priorities),
                "customer_tiers": sorted(self.customer_tiers), "services": sorted(self.services),
                "warning_thresholds": list(self.warning_thresholds),
                "escalations": [{"percent": p, "role": r} for p, r in self.escalations],
                "stall_after_seconds": self.stall_after.total_seconds(),
                "next_reply_seconds": self.next_reply.total_seconds() if self.next_reply else None,
                "ola_seconds": self.ola.total_seconds() if self.ola else None,
                "ola_teams": {team: amount.total_seconds() for team, amount in self.ola_teams}}

    @classmethod
    def from_spec(cls, policy_id: str, version: int, spec: Mapping[str, Any]) -> Policy:
        """Validated: targets > 0, thresholds increasing within 1..99, escalation levels increasing."""
        if not CONFIG_ID.match(policy_id):
            raise InvalidInput("a policy id is a slug: a-z, 0-9 and '-', at most 31 characters", field="policy_id")
        targets = {}
        for name in ("first_response_seconds", "resolution_seconds", "stall_after_seconds"):
            value = spec.get(name, DEFAULT_STALL_SECONDS) if name == "stall_after_seconds" else spec.get(name)
            # At least a second: a smaller amount rounds to a timedelta of 0, which would not read back.
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 1:
                raise InvalidInput(f"{name} must be a number of seconds, at least 1", field=name)
            targets[name] = timedelta(seconds=value)
        next_reply = _optional_seconds(spec.get("next_reply_seconds"), "next_reply_seconds")
        ola = _optional_seconds(spec.get("ola_seconds"), "ola_seconds")
        raw_teams = spec.get("ola_teams") or {}
        if not isinstance(raw_teams, Mapping):
            raise InvalidInput("ola_teams maps a team to its seconds", field="ola_teams")
        ola_teams = []
        for team, amount in sorted(raw_teams.items()):
            if not isinstance(team, str) or not team or len(team) > 100 or "\x00" in team:
                raise InvalidInput(f"{team!r} is not a team name", field="ola_teams")
            seconds = _optional_seconds(amount, "ola_teams")
            if seconds is None:
                raise InvalidInput(f"the OLA target of {team} must be a number of seconds", field="ola_teams")
            ola_teams.append((team, seconds))
        calendar_id = spec.get("calendar_id", "cn-default")
        if not isinstance(calendar_id, str) or not CONFIG_ID.match(calendar_id):
            raise InvalidInput("calendar_id must be a calendar's id", field="calendar_id")
        thresholds = _percents(spec.get("warning_thresholds", (50, 80)), "warning_thresholds")
        if any(not 0 < p < 100 for p in thresholds):
            raise InvalidInput("warning thresholds lie between 1 and 99 %", field="warning_thresholds")
        escalations = []
        raw = spec.get("escalations", [{"percent": p, "role": r} for p, r in DEFAULT_ESCALATIONS])
        if isinstance(raw, str) or not isinstance(raw, Iterable):
            raise InvalidInput("escalations must be a list of {percent, role}", field="escalations")
        for level in raw:
            if not isinstance(level, Mapping) or set(level) != {"percent", "role"}:
                raise InvalidInput("an escalation level is {percent, role}", field="escalations")
            role = level["role"]
            if not isinstance(role, str) or not _NAME.match(role):
                raise InvalidInput(f"{role!r} is not a role name", field="escalations")
            escalations.append((level["percent"], role))
        _percents([p for p, _ in escalations], "escalations")
        return cls(policy_id=policy_id, version=version, first_response=targets["first_response_seconds"],
                   resolution=targets["resolution_seconds"], calendar_id=calendar_id,
                   kinds=_names(spec.get("kinds", ()), "kinds", KINDS),
                   priorities=_names(spec.get("priorities", ()), "priorities", PRIORITIES),
                   customer_tiers=_names(spec.get("customer_tiers", ()), "customer_tiers", None),
                   services=_names(spec.get("services", ()), "services", None),
                   warning_thresholds=thresholds, escalations=tuple(escalations),
                   stall_after=targets["stall_after_seconds"],
                   next_reply=next_reply, ola=ola, ola_teams=tuple(ola_teams))


def _optional_seconds(value: Any, field: str) -> timedelta | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 1:
        raise InvalidInput(f"{field} must be a number of seconds, at least 1, or null", field=field)
    return timedelta(seconds=value)


def _percents(value: Any, field: str) -> tuple[int, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidInput(f"{field} must be a list of whole percentages", field=field)
    percents = list(value)
    if any(isinstance(p, bool) or not isinstance(p, int) or p <= 0 for p in percents):
        raise InvalidInput(f"{field} must be whole percentages greater than 0", field=field)
    if any(b <= a for a, b in zip(percents, percents[1:], strict=False)):
        raise InvalidInput(f"{field} must be strictly increasing", field=field)
    return tuple(percents)


def _names(value: Any, field: str, allowed: frozenset[str] | None) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidInput(f"{field} must be a list", field=field)
    names = frozenset(value)
    for name in names:
        if not isinstance(name, str) or not name or len(name) > 100 or (allowed is not None and name not in allowed):
            expected = f"; one of {', '.join(sorted(allowed))}" if allowed else ""
            raise InvalidInput(f"{name!r} is not allowed in {field}{expected}", field=field)
    return names


def _default(pid: str, priority: str, response: float, resolution: float, calendar: str, stall: float) -> Policy:
    return Policy(policy_id=pid, version=1, first_response=timedelta(seconds=response),
                  resolution=timedelta(seconds=resolution), calendar_id=calendar, priorities=frozenset({priority}),
                  stall_after=timedelta(seconds=stall))


# DOMAIN.md: P1 15 min / 4 h (24x7), P2 30 min / 8 business h, P3 4 business h / 3 business days,
# P4 1 business day / 5 business days. Stalled after: P1 1 h, P2 4 h, P3 1 business day, P4 2.
DEFAULT_POLICIES: dict[str, Policy] = {p.policy_id: p for p in (
    _default("p1", "P1", 15 * _MIN, 4 * _HOUR, "24x7", _HOUR),
    _default("p2", "P2", 30 * _MIN, 8 * _HOUR, "cn-default", 4 * _HOUR),
    _default("p3", "P3", 4 * _HOUR, 3 * _BUSINESS_DAY, "cn-default", _BUSINESS_DAY),
    _default("p4", "P4", _BUSINESS_DAY, 5 * _BUSINESS_DAY, "cn-default", 2 * _BUSINESS_DAY),
)}
# Applies when nothing else matches (e.g. every default was narrowed by an administrator).
FALLBACK = Policy(policy_id="fallback", version=1, first_response=timedelta(seconds=_BUSINESS_DAY),
                  resolution=timedelta(seconds=5 * _BUSINESS_DAY))


def choose(policies: Iterable[Policy], kind: str, priority: str, tier: str, service: str | None) -> Policy:
    matching = [p for p in policies if p.matches(kind, priority, tier, service)]
    if not matching:
        return FALLBACK
    return min(matching, key=lambda p: (-p.specificity, p.policy_id))


def evolve(state: Policy | None, event: DomainEvent) -> Policy:
    match event:
        case ev.PolicyDefined():
            return Policy.from_spec(event.policy_id, event.version, event.policy)
    raise Conflict(f"{getattr(event, 'calendar_id', 'this id')} is a calendar, not a policy", field="policy_id",
                   code="id_taken")


def decide(state: Policy | None, command: Any, now: Any, by: str) -> list[DomainEvent]:
    spec = {name: getattr(command, name) for name in (
        "first_response_seconds", "resolution_seconds", "calendar_id", "kinds", "priorities", "customer_tiers",
        "services", "warning_thresholds", "escalations", "stall_after_seconds", "next_reply_seconds", "ola_seconds",
        "ola_teams")}
    current = state or DEFAULT_POLICIES.get(command.policy_id)
    policy = Policy.from_spec(command.policy_id, (current.version if current else 0) + 1, spec)
    return [ev.PolicyDefined(policy_id=policy.policy_id, version=policy.version, policy=policy.to_spec(), at=now,
                             by=by)]
