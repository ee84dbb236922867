"""Signal rules: automatic risk identification from other services' events, as versioned configuration.

An upstream event becomes an `Observation` (a breach, an incident, a satisfaction response) with the team,
service, kind and priority it concerns. A rule groups the observations of its source by subject (a team or a
service, and the kind when `per_kind`) and fires when, as of a given observation of the subject (the
signal driver takes the newest):
- `count`: at least `threshold` observations lie in the last `window_seconds`, or
- `mean_below`: the mean `value` of the subject's last `last_n` observations is below `threshold`.
A rule's likelihood rises by one for each observation beyond the threshold (at most 5). DOMAIN.md's
defaults ship as version 1 of the rules below; an administrator or risk officer replaces any of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from opsat.common.domain import Conflict, DomainEvent, InvalidInput
from opsat.risk.domain import events as ev
from opsat.risk.domain.register import CATEGORIES, check_scale

SOURCES = ("sla_breach", "incident", "feedback_response")
MODES = ("count", "mean_below")
PRIORITIES = ("P1", "P2", "P3", "P4")
CONFIG_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
_DAY = 86400


@dataclass(frozen=True)
class Observation:
    """One upstream fact a rule can count: `event_id` is the upstream event's id (the evidence)."""

    event_id: str
    source: str
    at: datetime
    team: str | None = None
    service: str | None = None
    kind: str | None = None
    priority: str | None = None
    value: float | None = None  # a response's score (0-100)


@dataclass(frozen=True)
class Signal:
    """What a fired rule asserts about a subject: the risk to raise or re-score, and the evidence."""

    rule_id: str
    rule_version: int
    subject_type: str
    subject: str
    category: str
    title: str
    description: str
    likelihood: int
    impact: int
    observed: float
    evidence: tuple[str, ...]

    @property
    def key(self) -> str:
        """The subject a rule watches: one open risk per key."""
        return f"{self.rule_id}:{self.subject_type}:{self.subject}"


@dataclass(frozen=True)
class SignalRule:
    rule_id: str
    version: int
    source: str
    subject: str  # team | service
    threshold: float
    mode: str = "count"
    window_seconds: int | None = 7 * _DAY
    last_n: int | None = None
    priorities: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    per_kind: bool = False
    category: str = "service_quality"
    likelihood: int = 3
    impact: int = 3
    enabled: bool = True

    def to_spec(self) -> dict[str, Any]:
        return {"source": self.source, "subject": self.subject, "mode": self.mode, "threshold": self.threshold,
                "window_seconds": self.window_seconds, "last_n": self.last_n, "priorities": sorted(self.priorities),
                "kinds": sorted(self.kinds), "per_kind": self.per_kind, "category": self.category,
                "likelihood": self.likelihood, "impact": self.impact, "enabled": self.enabled}

    @classmethod
    def from_spec(cls, rule_id: str, version: int, spec: Mapping[str, Any]) -> SignalRule:
        """Validated: windows and `last_n` > 0, a threshold > 0, likelihood and impact 1-5."""
        if not CONFIG_ID.match(rule_id):
            raise InvalidInput("a rule id is a slug: a-z, 0-9 and '-', at most 41 characters", field="rule_id")
        source, subject, mode = spec.get("source"), spec.get("subject"), spec.get("mode", "count")
        for field, value, allowed in (("source", source, SOURCES), ("subject", subject, ("team", "service")),
                                      ("mode", mode, MODES), ("category", spec.get("category", "service_quality"),
                                                              CATEGORIES)):
            if value not in allowed:
                raise InvalidInput(f"{field} is one of {', '.join(allowed)}", field=field)
        threshold = spec.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 1_000_000:
            raise InvalidInput("threshold is a number greater than 0", field="threshold")
        window, last_n = spec.get("window_seconds"), spec.get("last_n")
        if mode == "count":
            if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
                raise InvalidInput("window_seconds is a whole number of seconds greater than 0", field="window_seconds")
            last_n = None
        else:
            if isinstance(last_n, bool) or not isinstance(last_n, int) or not 0 < last_n <= 10_000:
                raise InvalidInput("last_n is a whole number of responses greater than 0", field="last_n")
            if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window <= 0):
                raise InvalidInput("window_seconds is a whole number of seconds greater than 0", field="window_seconds")
        priorities = _names(spec.get("priorities", ()), "priorities", PRIORITIES)
        kinds = _names(spec.get("kinds", ()), "kinds", None)
        per_kind = spec.get("per_kind", False)
        enabled = spec.get("enabled", True)
        for field, value in (("per_kind", per_kind), ("enabled", enabled)):
            if not isinstance(value, bool):
                raise InvalidInput(f"{field} is true or false", field=field)
        return cls(rule_id=rule_id, version=version, source=source, subject=subject, mode=mode,
                   threshold=float(threshold), window_seconds=window, last_n=last_n, priorities=priorities,
                   kinds=kinds, per_kind=per_kind, category=spec.get("category", "service_quality"),
                   likelihood=check_scale(spec.get("likelihood", 3), "likelihood"),
                   impact=check_scale(spec.get("impact", 3), "impact"), enabled=enabled)

    # --- evaluation --------------------------------------------------------------------------------------
    def subject_of(self, o: Observation) -> str | None:
        """The subject this observation counts for, or None when the rule does not look at it."""
        if not self.enabled or o.source != self.source:
            return None
        if (self.priorities and o.priority not in self.priorities) or (self.kinds and o.kind not in self.kinds):
            return None
        name = o.team if self.subject == "team" else o.service
        if not name:
            return None
        return f"{name}/{o.kind}" if self.per_kind else name

    def evaluate(self, latest: Observation, history: Iterable[Observation]) -> Signal | None:
        """Whether the rule fires as of `latest` (which `history` includes), counting only observations of the
        same subject up to `latest`'s time."""
        subject = self.subject_of(latest)
        if subject is None:
            return None
        same = sorted((o for o in history if o.at <= latest.at and self.subject_of(o) == subject),
                      key=lambda o: (o.at, o.event_id))
        return self.judge(latest, subject, same)

    def judge(self, latest: Observation, subject: str, same: Sequence[Observation]) -> Signal | None:
        """`evaluate` once the history is narrowed: `same` holds only `subject`'s observations up to `latest`'s
        time, in time order (by event id when simultaneous), e.g. a pool kept in that order."""
        firing = self.firing(latest, same)
        return None if firing is None else self.signal(subject, *firing)

    def firing(self, latest: Observation, same: Sequence[Observation]) -> tuple[list[Observation], float] | None:
        """`judge` without building the signal: the observations it would cite and the observed figure, or None
        when the rule does not fire (for a caller that keeps only the last signal of many)."""
        if self.mode == "count":
            assert self.window_seconds is not None
            since = latest.at - timedelta(seconds=self.window_seconds)
            inside = [o for o in same if o.at > since]
            if len(inside) < self.threshold:
                return None
            return inside, float(len(inside))
        assert self.last_n is not None
        if self.window_seconds is not None:
            same = [o for o in same if o.at > latest.at - timedelta(seconds=self.window_seconds)]
        inside = list(same[-self.last_n:])
        scores = [o.value for o in inside if o.value is not None]
        if len(scores) < self.last_n or sum(scores) / len(scores) >= self.threshold:
            return None
        return inside, round(sum(scores) / len(scores), 2)

    def signal(self, subject: str, inside: Sequence[Observation], observed: float) -> Signal:
        """The signal of a firing (`firing`) about `subject`, citing `inside`."""
        if self.mode == "count":
            assert self.window_seconds is not None
            what = f"{len(inside)} {_NOUNS[self.source]} in {_span(self.window_seconds)}"
        else:
            what = f"mean score {observed:g} over the last {self.last_n} responses (below {self.threshold:g})"
        extra = int(observed - self.threshold) if self.mode == "count" else 0
        label = f"{self.subject} {subject}"
        return Signal(rule_id=self.rule_id, rule_version=self.version, subject_type=self.subject, subject=subject,
                      category=self.category, title=f"{_TITLES[self.source]}: {label}"[:200],
                      description=f"rule {self.rule_id} v{self.version}: {what} for {label}",
                      likelihood=min(5, self.likelihood + extra), impact=self.impact, observed=observed,
                      evidence=tuple(o.event_id for o in inside))


_NOUNS = {"sla_breach": "SLA breaches", "incident": "incidents", "feedback_response": "responses"}
_TITLES = {"sla_breach": "Repeated SLA breaches", "incident": "Recurring incidents",
           "feedback_response": "Low satisfaction"}


def _span(seconds: int) -> str:
    if seconds % _DAY == 0:
        return f"{seconds // _DAY} d"
    return f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds} s"


def _names(value: Any, field: str, allowed: Sequence[str] | None) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidInput(f"{field} must be a list", field=field)
    names = frozenset(value)
    for name in names:
        if not isinstance(name, str) or not name or len(name) > 100 or (allowed is not None and name not in allowed):
            raise InvalidInput(f"{name!r} is not allowed in {field}", field=field)
    return names


def _default(rule_id: str, **spec: Any) -> SignalRule:
    return SignalRule.from_spec(rule_id, 1, spec)


# DOMAIN.md: ≥ 3 SLA breaches of one team or service within 7 days; team CSAT below 70 over the last 20
# responses; ≥ 3 incidents of one kind on one service within 24 h; any P1 breach.
DEFAULT_RULES: dict[str, SignalRule] = {r.rule_id: r for r in (
    _default("sla-breaches-team", source="sla_breach", subject="team", threshold=3, window_seconds=7 * _DAY),
    _default("sla-breaches-service", source="sla_breach", subject="service", threshold=3, window_seconds=7 * _DAY),
    _default("csat-team", source="feedback_response", subject="team", mode="mean_below", threshold=70, last_n=20),
    _default("incidents-service", source="incident", subject="service", threshold=3, window_seconds=_DAY,
             kinds=["incident"], per_kind=True, category="technical", impact=4),
    _default("p1-breach", source="sla_breach", subject="team", threshold=1, window_seconds=7 * _DAY,
             priorities=["P1"], impact=5),
)}


def evolve(state: SignalRule | None, event: DomainEvent) -> SignalRule:
    match event:
        case ev.RuleDefined():
            return SignalRule.from_spec(event.rule_id, event.version, event.rule)
    raise Conflict(f"{getattr(event, 'plan_id', 'this id')} is not a signal rule", field="rule_id", code="id_taken")


def decide(state: SignalRule | None, command: Any, now: Any, by: str) -> list[DomainEvent]:
    current = state or DEFAULT_RULES.get(command.rule_id)
    rule = SignalRule.from_spec(command.rule_id, (current.version if current else 0) + 1, command.spec())
    return [ev.RuleDefined(rule_id=rule.rule_id, version=rule.version, rule=rule.to_spec(), at=now, by=by)]
