"""Events the SLA monitor publishes on `opsat.sla.events`: calendar and policy versions, and clock changes.

Every clock event carries `next_check_at`, the next instant a threshold of the clock can be reached
(None while paused or finished): the timer reaction keeps the clock's one deadline at that instant.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from opsat.common.domain import DomainEvent, Instant

TargetName = Literal["response", "resolution"]


def _type(name: str) -> str:
    return f"opsat.sla.{name}"


class CalendarDefined(DomainEvent):
    """A calendar was created or replaced; `calendar` is the whole spec of this version."""

    event_type: ClassVar[str] = _type("calendar.defined")
    calendar_id: str
    version: int
    calendar: dict[str, Any]
    at: Instant
    by: str


class CalendarDaysAdded(DomainEvent):
    """Holidays and make-up working days added (e.g. next year's); `calendar` is the resulting spec."""

    event_type: ClassVar[str] = _type("calendar.days_added")
    calendar_id: str
    version: int
    holidays: list[str]
    makeup_workdays: list[str]
    calendar: dict[str, Any]
    at: Instant
    by: str


class PolicyDefined(DomainEvent):
    """A policy was created or replaced; `policy` is the whole spec of this version."""

    event_type: ClassVar[str] = _type("policy.defined")
    policy_id: str
    version: int
    policy: dict[str, Any]
    at: Instant
    by: str


class ClockEvent(DomainEvent):
    request_id: str
    at: Instant
    next_check_at: Instant | None = None


class ClockStarted(ClockEvent):
    """A request was submitted; the clock keeps the policy and calendar versions that applied then."""

    event_type: ClassVar[str] = _type("clock.started")
    organisation_id: str
    kind: str
    priority: str
    customer_tier: str
    service: str | None = None
    team: str | None = None
    policy_id: str
    policy_version: int
    calendar_id: str
    calendar_version: int
    calendar: dict[str, Any]
    targets: dict[str, float]  # target -> business seconds
    warning_thresholds: list[int]
    escalations: list[dict[str, Any]]  # [{"percent": 50, "role": "team_lead"}, ...]
    due: dict[str, Instant]
    stall_after_seconds: float | None = None  # business seconds without activity before stalled (None: default)
    next_reply_seconds: float | None = None  # periodic update target after the first response (None: none)
    ola_seconds: float | None = None  # OLA target of the team holding the request (None: none)
    ola_teams: dict[str, float] = {}  # per-team OLA targets


class ResponseMet(ClockEvent):
    """The request was accepted or got its first public reply from staff."""

    event_type: ClassVar[str] = _type("clock.response_met")
    on_time: bool
    how: str  # accepted | replied
    team: str | None = None


class ClockPaused(ClockEvent):
    """The request awaits the customer: no business time counts until it resumes."""

    event_type: ClassVar[str] = _type("clock.paused")
    reason: str


class ClockResumed(ClockEvent):
    """The customer answered (or the request was reopened): the due times moved by the paused business time."""

    event_type: ClassVar[str] = _type("clock.resumed")
    reason: str
    paused_seconds: float  # business time of this pause (or of resolved -> reopened)
    due: dict[str, Instant]


class ResolutionMet(ClockEvent):
    event_type: ClassVar[str] = _type("clock.resolution_met")
    on_time: bool


class ThresholdReached(ClockEvent):
    """A warning threshold of a target was reached; `escalate_to` names the role to tell, if any."""

    event_type: ClassVar[str] = _type("clock.warned")
    target: TargetName
    percent: int
    due_at: Instant
    escalate_to: str | None = None


class TargetBreached(ClockEvent):
    event_type: ClassVar[str] = _type("clock.breached")
    target: TargetName
    due_at: Instant
    escalate_to: str | None = None


class ClockEscalated(ClockEvent):
    """An escalation level beyond warnings and breach (default: director at 150 %)."""

    event_type: ClassVar[str] = _type("clock.escalated")
    target: TargetName
    percent: int
    escalate_to: str


class ClockRetargeted(ClockEvent):
    """The request's priority changed, or a manager chose another policy (`by`, `reason`): new targets from that
    policy (the clock keeps its calendar, the business time already used and the thresholds already announced)."""

    event_type: ClassVar[str] = _type("clock.retargeted")
    priority: str
    policy_id: str
    policy_version: int
    targets: dict[str, float]
    warning_thresholds: list[int]
    escalations: list[dict[str, Any]]
    due: dict[str, Instant]
    stall_after_seconds: float | None = None
    next_reply_seconds: float | None = None
    ola_seconds: float | None = None
    ola_teams: dict[str, float] = {}
    by: str | None = None  # the manager who re-targeted the clock (None: a priority change in intake)
    reason: str | None = None


class TeamChanged(ClockEvent):
    event_type: ClassVar[str] = _type("clock.team_changed")
    team: str


class ClockCancelled(ClockEvent):
    """The request was rejected or cancelled: the clock stops and counts for no compliance figure."""

    event_type: ClassVar[str] = _type("clock.cancelled")
    reason: str


class ExcusalRequested(ClockEvent):
    """Someone asked that a breach be excused: caused by the customer or a third party, with a reason."""

    event_type: ClassVar[str] = _type("clock.excusal_requested")
    target: TargetName
    cause: Literal["customer", "third_party"]
    reason: str
    by: str


class ExcusalApproved(ClockEvent):
    """A breach is excused: it leaves the compliance figures and stays visible in the breach list."""

    event_type: ClassVar[str] = _type("clock.excusal_approved")
    target: TargetName
    reason: str
    by: str


class ExcusalRejected(ClockEvent):
    """The request to excuse a breach was turned down: the breach counts."""

    event_type: ClassVar[str] = _type("clock.excusal_rejected")
    target: TargetName
    reason: str
    by: str


class ClockStalled(ClockEvent):
    """No activity on the request since `quiet_since` for `quiet_seconds` of business time (3.4): flagged once
    per quiet spell; `at` is the instant the span ran out."""

    event_type: ClassVar[str] = _type("clock.stalled")
    quiet_since: Instant
    quiet_seconds: float
    team: str | None = None


class StallCleared(ClockEvent):
    """Activity on a stalled request (`activity` = the intake event's type): the stalled flag clears."""

    event_type: ClassVar[str] = _type("clock.stall_cleared")
    quiet_since: Instant
    activity: str


class UpdateGiven(ClockEvent):
    """Staff gave the customer a public update after the first response: the next one is due at `next_due_at`."""

    event_type: ClassVar[str] = _type("clock.update_given")
    next_due_at: Instant


class UpdateOverdue(ClockEvent):
    """No public update since `since` within the policy's next-reply target: announced once per missed update;
    `at` is the instant it fell due."""

    event_type: ClassVar[str] = _type("clock.update_overdue")
    since: Instant
    due_at: Instant
    team: str | None = None


class OlaBreached(ClockEvent):
    """The team holding the request used up its OLA target (business time since it took the request, paused time
    excluded) without resolving or handing it over: announced once per holding; `at` is the instant it fell due."""

    event_type: ClassVar[str] = _type("clock.ola_breached")
    team: str
    held_since: Instant
    due_at: Instant
    target_seconds: float


CLOCK_EVENTS: tuple[type[ClockEvent], ...] = (ClockStarted, ResponseMet, ClockPaused, ClockResumed, ResolutionMet,
                                              ThresholdReached, TargetBreached, ClockEscalated, ClockRetargeted,
                                              TeamChanged, ClockCancelled, ExcusalRequested, ExcusalApproved,
                                              ExcusalRejected, ClockStalled, StallCleared, UpdateGiven, UpdateOverdue,
                                              OlaBreached)
class OutageReported(DomainEvent):
    """Monitoring reported an outage of a business service (`ended_at` null while it lasts)."""

    event_type: ClassVar[str] = _type("outage.reported")
    outage_id: str
    service: str
    severity: Literal["critical", "major", "minor"]
    started_at: Instant
    ended_at: Instant | None = None
    at: Instant
    by: str


class OutageEnded(DomainEvent):
    event_type: ClassVar[str] = _type("outage.ended")
    outage_id: str
    service: str
    ended_at: Instant
    at: Instant
    by: str


OUTAGE_EVENTS: tuple[type[DomainEvent], ...] = (OutageReported, OutageEnded)
SLA_EVENTS: tuple[type[DomainEvent], ...] = (CalendarDefined, CalendarDaysAdded, PolicyDefined, *CLOCK_EVENTS,
                                             *OUTAGE_EVENTS)
