"""Facts: the numbers a scorecard is made of, projected per subject and day out of the other services'
events. Every fact keeps the id of the event behind it, so any number can be drilled down to events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

# name -> what one unit of it means
FACTS: Mapping[str, str] = {
    "handled": "a request the subject resolved",
    "response_measured": "an SLA clock whose first response was due while the subject held the request",
    "responded_on_time": "a first response met within its SLA",
    "resolution_measured": "an SLA clock whose resolution the subject delivered or missed",
    "resolved_on_time": "a resolution met within its SLA",
    "resolved": "a resolution by the subject",
    "reopened": "a resolution by the subject that the customer reopened",
    "first_time_resolved": "a resolution that was never reopened",
    "complaints": "a complaint about the subject's work",
    "csat_responses": "a satisfaction survey answered about the subject's work",
    "csat_score_sum": "the survey's weighted score (0-100), summed",
    "risks": "a risk raised against the subject's team or service",
    "emergencies": "an emergency plan activated for the subject's work",
}


@dataclass(frozen=True)
class Fact:
    """`amount` of fact `name` for a subject (an engineer or a team) on a day, because of one event."""

    subject: str
    day: date
    name: str
    amount: Decimal
    event_id: str


@dataclass(frozen=True)
class Totals:
    """Fact totals of one subject over a period, with the events behind each (when they were asked for: a
    calculation needs only the amounts, a drill-down the events)."""

    amounts: Mapping[str, Decimal]
    evidence: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, facts: Iterable[Fact]) -> Totals:
        amounts: dict[str, Decimal] = {}
        evidence: dict[str, set[str]] = {}
        for fact in facts:
            amounts[fact.name] = amounts.get(fact.name, Decimal(0)) + fact.amount
            evidence.setdefault(fact.name, set()).add(fact.event_id)
        return cls(amounts, {name: tuple(sorted(ids)) for name, ids in evidence.items()})
