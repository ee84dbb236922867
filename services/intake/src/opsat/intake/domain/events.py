"""Events: facts about one service request, stored in its stream and published on opsat.intake.events.

Every event carries `request_id`, `at` (when it happened, from the command's context, so that
timelines and SLA clocks need no other clock) and `by` (the id of the actor who caused it).
Events are self-contained: a projection or another service needs no second source to use them.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from opsat.common.domain import DomainEvent, Instant
from opsat.intake.domain.values import (
    Channel,
    CloseReason,
    LinkType,
    Priority,
    RequestKind,
    Status,
)


class IntakeEvent(DomainEvent):
    """Fields shared by every intake event."""

    request_id: str
    at: Instant
    by: str


def _type(name: str) -> str:
    return f"opsat.intake.request.{name}"


# --- life cycle (status-changing events) ---------------------------------------------------------


class RequestSubmitted(IntakeEvent):
    """Status → submitted. `priority` comes from the policy's matrix; the two `requires_*` flags freeze the
    policy's rules for this request, so that a later configuration change does not alter it."""

    event_type: ClassVar[str] = _type("submitted")
    kind: RequestKind
    channel: Channel
    title: str
    description: str
    impact: int
    urgency: int
    priority: Priority
    requester_id: str
    organisation_id: str
    service: str | None = None
    customer_tier: str = "standard"
    team: str | None = None
    watchers: tuple[str, ...] = ()
    requires_approval: bool = False
    requires_requirement_confirmation: bool = False


class RequestAccepted(IntakeEvent):
    """Status → accepted (受理). Counts as the first response for the SLA."""

    event_type: ClassVar[str] = _type("accepted")
    team: str
    assignee: str | None = None


class RequestRejected(IntakeEvent):
    """Status → rejected (the service desk does not take the request)."""

    event_type: ClassVar[str] = _type("rejected")
    reason: str


class WorkStarted(IntakeEvent):
    """Status → in_progress, from accepted or reopened."""

    event_type: ClassVar[str] = _type("work_started")


class CustomerInfoRequested(IntakeEvent):
    """Status → awaiting_customer: the SLA clock pauses."""

    event_type: ClassVar[str] = _type("customer_info_requested")
    question: str


class CustomerInfoProvided(IntakeEvent):
    """Status → in_progress: the SLA clock resumes."""

    event_type: ClassVar[str] = _type("customer_info_provided")
    answer: str


class RequestResolved(IntakeEvent):
    """Status → resolved (delivered, awaiting the requester's acceptance).

    `auto_close_due_at` is when an unanswered delivery closes by itself (schedule it)."""

    event_type: ClassVar[str] = _type("resolved")
    solution: str
    auto_close_due_at: Instant


class RequestClosed(IntakeEvent):
    """Status → closed, because the requester accepted the delivery or nobody answered in time."""

    event_type: ClassVar[str] = _type("closed")
    reason: CloseReason
    comment: str | None = None
    auto_close_due_at: Instant | None = None  # set when reason is auto_closed


class RequestReopened(IntakeEvent):
    """Status → reopened. `from_status` resolved: the requester rejected the delivery;
    closed: the requester reopened within the reopen window."""

    event_type: ClassVar[str] = _type("reopened")
    reason: str
    from_status: Status
    reopen_count: int


class RequestCancelled(IntakeEvent):
    """Status → cancelled, by the requester, before resolve."""

    event_type: ClassVar[str] = _type("cancelled")
    reason: str
    from_status: Status


class RequestApproved(IntakeEvent):
    """Approval → approved (status unchanged)."""

    event_type: ClassVar[str] = _type("approved")
    comment: str | None = None


class RequestDeclined(IntakeEvent):
    """Approval → declined and status → rejected."""

    event_type: ClassVar[str] = _type("declined")
    reason: str


# --- priority and requirement ----------------------------------------------------------------------


class PriorityOverridden(IntakeEvent):
    event_type: ClassVar[str] = _type("priority_overridden")
    priority: Priority
    previous_priority: Priority
    reason: str


class RequirementRecorded(IntakeEvent):
    """A draft of scope and acceptance criteria, awaiting the requester's confirmation."""

    event_type: ClassVar[str] = _type("requirement_recorded")
    scope: str
    acceptance_criteria: str
    version: int


class RequirementConfirmed(IntakeEvent):
    """The requester confirmed requirement `version` (the first draft, or a version from an approved change)."""

    event_type: ClassVar[str] = _type("requirement_confirmed")
    version: int


class RequirementChangeProposed(IntakeEvent):
    event_type: ClassVar[str] = _type("requirement_change_proposed")
    change_id: str
    scope: str
    acceptance_criteria: str
    reason: str
    base_version: int


class RequirementChangeAssessed(IntakeEvent):
    event_type: ClassVar[str] = _type("requirement_change_assessed")
    change_id: str
    effort_hours: float
    impact_summary: str


class RequirementChangeApproved(IntakeEvent):
    """The requirement now has `scope`, `acceptance_criteria` and the new `version`.

    `requires_confirmation`: the requester did not propose the change, so the new version is unconfirmed
    until a RequirementConfirmed with this `version`; false: the requester's own proposal, confirmed now.
    (Events recorded before the field existed read as false: then every approved change was confirmed.)"""

    event_type: ClassVar[str] = _type("requirement_change_approved")
    change_id: str
    version: int
    scope: str
    acceptance_criteria: str
    proposed_by: str | None = None
    requires_confirmation: bool = False


class RequirementChangeRejected(IntakeEvent):
    event_type: ClassVar[str] = _type("requirement_change_rejected")
    change_id: str
    reason: str


# --- assignment and collaboration --------------------------------------------------------------------


class RequestAssigned(IntakeEvent):
    """A (re)assignment; the sequence of these events is the reassignment history."""

    event_type: ClassVar[str] = _type("assigned")
    team: str
    assignee: str | None = None
    previous_team: str | None = None
    previous_assignee: str | None = None
    reason: str | None = None


class WatcherAdded(IntakeEvent):
    event_type: ClassVar[str] = _type("watcher_added")
    user_id: str


class WatcherRemoved(IntakeEvent):
    event_type: ClassVar[str] = _type("watcher_removed")
    user_id: str


class ReplyAdded(IntakeEvent):
    """A public reply. The first one `from_staff` counts as a response for the SLA."""

    event_type: ClassVar[str] = _type("reply_added")
    reply_id: str
    body: str
    from_staff: bool


class InternalNoteAdded(IntakeEvent):
    """Staff only: projections must never show it to the requester's side."""

    event_type: ClassVar[str] = _type("internal_note_added")
    note_id: str
    body: str


class RequestLinked(IntakeEvent):
    event_type: ClassVar[str] = _type("linked")
    target_id: str
    link_type: LinkType


class RequestUnlinked(IntakeEvent):
    event_type: ClassVar[str] = _type("unlinked")
    target_id: str
    link_type: LinkType


class TimeLogged(IntakeEvent):
    """`by` is the agent whose time it is."""

    event_type: ClassVar[str] = _type("time_logged")
    entry_id: str
    minutes: int
    work_date: date
    note: str | None = None


INTAKE_EVENTS: tuple[type[DomainEvent], ...] = (
    RequestSubmitted,
    RequestAccepted,
    RequestRejected,
    WorkStarted,
    CustomerInfoRequested,
    CustomerInfoProvided,
    RequestResolved,
    RequestClosed,
    RequestReopened,
    RequestCancelled,
    RequestApproved,
    RequestDeclined,
    PriorityOverridden,
    RequirementRecorded,
    RequirementConfirmed,
    RequirementChangeProposed,
    RequirementChangeAssessed,
    RequirementChangeApproved,
    RequirementChangeRejected,
    RequestAssigned,
    WatcherAdded,
    WatcherRemoved,
    ReplyAdded,
    InternalNoteAdded,
    RequestLinked,
    RequestUnlinked,
    TimeLogged,
)
