"""Commands of the SLA monitor. Configuration commands are routed (admin); clock commands come from
intake's events (through the clock driver reaction) and from the clock's timer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from opsat.sla_monitor.domain.policies import Policy


# --- configuration -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DefineCalendar:
    """Create or replace a calendar (a new version)."""

    may_create: ClassVar[bool] = True  # a shipped default or a new one: the domain decides

    calendar_id: str
    time_zone: str = "Asia/Shanghai"
    always_open: bool = False
    hours: dict[str, Any] | None = None
    holidays: tuple[str, ...] = ()
    makeup_workdays: tuple[str, ...] = ()
    makeup_hours: list[Any] | None = None


@dataclass(frozen=True)
class AddCalendarDays:
    """Add holidays and make-up working days (e.g. next year's) to a calendar (a new version)."""

    may_create: ClassVar[bool] = True  # a shipped default or a new one: the domain decides

    calendar_id: str
    holidays: tuple[str, ...] = ()
    makeup_workdays: tuple[str, ...] = ()


@dataclass(frozen=True)
class DefinePolicy:
    """Create or replace a policy (a new version); it applies to clocks started afterwards."""

    may_create: ClassVar[bool] = True  # a shipped default or a new one: the domain decides

    policy_id: str
    first_response_seconds: float
    resolution_seconds: float
    calendar_id: str = "cn-default"
    kinds: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    customer_tiers: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    warning_thresholds: tuple[int, ...] = (50, 80)
    escalations: tuple[dict[str, Any], ...] = ({"percent": 50, "role": "team_lead"},
                                               {"percent": 100, "role": "manager"},
                                               {"percent": 150, "role": "director"})
    stall_after_seconds: float = 9 * 3600  # business time without activity before a request is stalled
    next_reply_seconds: float | None = None  # periodic update target after the first response
    ola_seconds: float | None = None  # operational level target of the team holding a request
    ola_teams: dict[str, float] | None = None  # per-team OLA targets overriding `ola_seconds`


# --- clocks ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StartClock:
    may_create: ClassVar[bool] = True  # a new clock: the domain refuses a second start

    request_id: str
    organisation_id: str
    kind: str
    priority: str
    customer_tier: str
    at: datetime
    policy: Policy
    calendar_id: str
    calendar_version: int
    calendar: dict[str, Any]
    service: str | None = None
    team: str | None = None


@dataclass(frozen=True)
class MeetResponse:
    request_id: str
    at: datetime
    how: str  # accepted | replied
    team: str | None = None


@dataclass(frozen=True)
class PauseClock:
    request_id: str
    at: datetime
    reason: str = "awaiting_customer"


@dataclass(frozen=True)
class ResumeClock:
    request_id: str
    at: datetime
    reason: str = "customer_replied"


@dataclass(frozen=True)
class MeetResolution:
    request_id: str
    at: datetime


@dataclass(frozen=True)
class ReopenClock:
    request_id: str
    at: datetime


@dataclass(frozen=True)
class RetargetClock:
    request_id: str
    at: datetime
    priority: str
    policy: Policy


@dataclass(frozen=True)
class ChangeTeam:
    request_id: str
    at: datetime
    team: str


@dataclass(frozen=True)
class CancelClock:
    request_id: str
    at: datetime
    reason: str


# --- breach excusal (staff, through the API) -------------------------------------------------------------
@dataclass(frozen=True)
class RequestExcusal:
    """Ask that a breach caused by the customer or a third party be excused."""

    request_id: str
    target: str
    cause: str  # customer | third_party
    reason: str


@dataclass(frozen=True)
class ApproveExcusal:
    """Excuse a breach: it leaves the compliance figures and stays in the breach list, marked excused."""

    request_id: str
    target: str
    reason: str


@dataclass(frozen=True)
class RejectExcusal:
    request_id: str
    target: str
    reason: str


@dataclass(frozen=True)
class ChangeClockPolicy:
    """A manager re-targets a running clock under another policy, with a reason (kept in the explanation).
    `policy` is looked up by the service before the decision (the version current then)."""

    request_id: str
    policy_id: str
    reason: str
    policy: Policy | None = None


# --- outages (monitoring) ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportOutage:
    may_create: ClassVar[bool] = True  # a new outage: the domain refuses a second report

    outage_id: str
    service: str
    severity: str
    started_at: datetime
    ended_at: datetime | None = None


@dataclass(frozen=True)
class EndOutage:
    outage_id: str
    ended_at: datetime


@dataclass(frozen=True)
class NoteActivity:
    """Something happened on the request in intake while it was flagged as stalled: the flag clears."""

    request_id: str
    at: datetime
    activity: str  # the intake event's type


@dataclass(frozen=True)
class CheckStall:
    """The stall timer: flag the request if nothing happened since `quiet_since` for the policy's span."""

    request_id: str
    quiet_since: str  # ISO 8601, from the deadline's payload


@dataclass(frozen=True)
class CheckClock:
    """The clock's timer: announce every threshold reached by now."""

    request_id: str
