"""Commands: what an actor asks the intake domain to do with one service request.

The API turns HTTP bodies into these (same field names), and `aggregate.decide` turns them into events
or refuses them. Enum fields also accept their plain string values (decide converts and validates them).
Class attributes tell the generic handler what it needs: `creates_stream` (a new request),
`references` (fields naming other requests, which must exist), `generated_ids` (minted when absent).
"""

from __future__ import annotations

from dataclasses import dataclass, is_dataclass
from datetime import date
from typing import ClassVar

from opsat.common.calendar import BusinessCalendar
from opsat.intake.domain.values import Channel, LinkType, Priority, RequestKind


@dataclass(frozen=True)
class SubmitRequest:
    creates_stream: ClassVar[bool] = True

    request_id: str
    kind: RequestKind
    channel: Channel
    title: str
    description: str
    impact: int  # 1 enterprise-wide, 2 department, 3 individual
    urgency: int  # 1 high, 2 medium, 3 low
    requester_id: str
    organisation_id: str
    service: str | None = None  # the business service concerned
    customer_tier: str | None = None  # staff only; else the organisation's tier from the policy
    requires_approval: bool | None = None  # True asks for approval; None follows the policy's catalogue
    team: str | None = None
    watchers: tuple[str, ...] = ()


# --- life cycle -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcceptRequest:
    request_id: str
    team: str | None = None  # defaults to the team chosen at submit; one of the two is required
    assignee: str | None = None


@dataclass(frozen=True)
class RejectRequest:
    request_id: str
    reason: str


@dataclass(frozen=True)
class StartWork:
    request_id: str


@dataclass(frozen=True)
class RequestCustomerInfo:
    request_id: str
    question: str


@dataclass(frozen=True)
class ProvideCustomerInfo:
    request_id: str
    answer: str


@dataclass(frozen=True)
class ResolveRequest:
    request_id: str
    solution: str
    # The latest version of the calendar the policy follows, looked up before deciding (never in the body).
    calendar: BusinessCalendar | None = None


@dataclass(frozen=True)
class AcceptDelivery:
    request_id: str
    comment: str | None = None


@dataclass(frozen=True)
class RejectDelivery:
    request_id: str
    reason: str


@dataclass(frozen=True)
class ReopenRequest:
    request_id: str
    reason: str


@dataclass(frozen=True)
class AutoCloseRequest:
    """Issued by the deadline scheduler (a service account) when auto_close_due_at has come."""

    request_id: str


@dataclass(frozen=True)
class CancelRequest:
    request_id: str
    reason: str


@dataclass(frozen=True)
class OverridePriority:
    request_id: str
    priority: Priority
    reason: str


# --- requirement (需求确认 / 需求变更) ----------------------------------------------------------


@dataclass(frozen=True)
class RecordRequirement:
    request_id: str
    scope: str
    acceptance_criteria: str


@dataclass(frozen=True)
class ConfirmRequirement:
    request_id: str


@dataclass(frozen=True)
class ProposeRequirementChange:
    generated_ids: ClassVar[tuple[str, ...]] = ("change_id",)

    request_id: str
    change_id: str
    scope: str
    acceptance_criteria: str
    reason: str


@dataclass(frozen=True)
class AssessRequirementChange:
    request_id: str
    change_id: str
    effort_hours: float
    impact_summary: str


@dataclass(frozen=True)
class ApproveRequirementChange:
    request_id: str
    change_id: str


@dataclass(frozen=True)
class RejectRequirementChange:
    request_id: str
    change_id: str
    reason: str


# --- approval ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApproveRequest:
    request_id: str
    comment: str | None = None


@dataclass(frozen=True)
class DeclineRequest:
    request_id: str
    reason: str


# --- assignment and collaboration ---------------------------------------------------------------


@dataclass(frozen=True)
class AssignRequest:
    request_id: str
    team: str
    assignee: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class AddWatcher:
    request_id: str
    user_id: str


@dataclass(frozen=True)
class RemoveWatcher:
    request_id: str
    user_id: str


@dataclass(frozen=True)
class AddReply:
    """A public reply, visible to the requester's side."""

    generated_ids: ClassVar[tuple[str, ...]] = ("reply_id",)

    request_id: str
    reply_id: str
    body: str


@dataclass(frozen=True)
class AddInternalNote:
    """Visible to staff only."""

    generated_ids: ClassVar[tuple[str, ...]] = ("note_id",)

    request_id: str
    note_id: str
    body: str


@dataclass(frozen=True)
class LinkRequest:
    references: ClassVar[tuple[str, ...]] = ("target_id",)

    request_id: str
    target_id: str
    link_type: LinkType


@dataclass(frozen=True)
class UnlinkRequest:
    request_id: str
    target_id: str
    link_type: LinkType


@dataclass(frozen=True)
class LogTime:
    generated_ids: ClassVar[tuple[str, ...]] = ("entry_id",)

    request_id: str
    entry_id: str
    minutes: int  # 1..1440
    note: str | None = None
    work_date: date | None = None  # defaults to today in the policy calendar's time zone


# Every command class above; the rule table in aggregate.py has one rule for each (a test checks).
INTAKE_COMMANDS: tuple[type, ...] = tuple(
    v for v in list(globals().values()) if isinstance(v, type) and is_dataclass(v) and v.__module__ == __name__)
