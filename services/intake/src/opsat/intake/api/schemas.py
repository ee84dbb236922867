"""HTTP bodies of the intake API (never the domain events). Unknown fields are refused."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from opsat.intake.domain.policy import LEVELS
from opsat.intake.domain.values import (
    MAX_CHANGE_ID_LENGTH,
    MAX_EFFORT_HOURS,
    MAX_ID_LENGTH,
    MAX_MINUTES_PER_ENTRY,
    MAX_REASON_LENGTH,
    MAX_TEXT_LENGTH,
    MAX_TITLE_LENGTH,
    MAX_WATCHERS,
    Channel,
    LinkType,
    Priority,
    RequestKind,
)

# Every limit is the domain's (values.py); a unit test compares the bodies' schemas with values.TEXT_LIMITS.
# PostgreSQL text cannot hold NUL, so no string may carry one (a 422 here, not a 500 at the insert).
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_LENGTH,
                                        pattern=NO_NUL)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_REASON_LENGTH,
                                          pattern=NO_NUL)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ID_LENGTH, pattern=NO_NUL)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE_LENGTH,
                                         pattern=NO_NUL)]
# strict: JSON `true` is not the number 1
Level = Annotated[int, Field(ge=min(LEVELS), le=max(LEVELS), strict=True)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SubmitBody(Body):
    kind: RequestKind
    channel: Channel = Channel.portal
    title: Title
    description: Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH, pattern=NO_NUL)] = ""
    impact: Level = Field(description="1 enterprise-wide, 2 department, 3 individual")
    urgency: Level = Field(description="1 high, 2 medium, 3 low")
    service: Name | None = Field(default=None, description="the business service concerned")
    customer_tier: Name | None = Field(default=None, description="staff only; by default the organisation's tier")
    requires_approval: bool | None = Field(default=None, description="ask for approval; null follows the catalogue")
    team: Name | None = Field(default=None, description="staff only; a requester's request is routed on accept")
    watchers: Annotated[list[Name], Field(max_length=MAX_WATCHERS)] = []
    requester_id: Name | None = Field(default=None, description="staff submitting on behalf of a requester")
    organisation_id: Name | None = Field(default=None, description="staff submitting for another organisation")


class AcceptBody(Body):
    team: Name | None = None
    assignee: Name | None = None


class ReasonBody(Body):
    reason: Reason


class QuestionBody(Body):
    question: Text


class AnswerBody(Body):
    answer: Text


class ResolveBody(Body):
    solution: Text


class CommentBody(Body):
    comment: Reason | None = None


class PriorityBody(Body):
    priority: Priority
    reason: Reason


class RequirementBody(Body):
    scope: Text
    acceptance_criteria: Text


ChangeId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_CHANGE_ID_LENGTH,
                                            pattern=r"^[A-Za-z0-9_.:-]+$")]


class RequirementChangeBody(Body):
    change_id: ChangeId | None = Field(default=None, description="client-chosen id; generated when absent")
    scope: Text
    acceptance_criteria: Text
    reason: Reason


class ChangeRef(Body):
    change_id: ChangeId


class ChangeRejection(Body):
    change_id: ChangeId
    reason: Reason


class AssessmentBody(Body):
    change_id: ChangeId
    effort_hours: Annotated[float, Field(ge=0, le=MAX_EFFORT_HOURS, strict=True,
                                         description="0 when the change needs no extra work")]
    impact_summary: Text


class AssignBody(Body):
    team: Name
    assignee: Name | None = None
    reason: Reason | None = None


class WatcherBody(Body):
    user_id: Name


class MessageBody(Body):
    body: Text


class LinkBody(Body):
    target_id: Name
    link_type: LinkType


class TimeBody(Body):
    minutes: Annotated[int, Field(ge=1, le=MAX_MINUTES_PER_ENTRY, strict=True)]
    note: Reason | None = None
    work_date: date | None = None


class CommandAccepted(BaseModel):
    """What every command answers: the stream's new version (send it back as If-Match or min_version)."""

    request_id: str
    version: int
    position: int
    event_ids: list[str]
    replayed: bool = Field(description="true when an Idempotency-Key repeat returned the first result")


class RequestView(BaseModel):
    id: str
    organisation_id: str
    requester_id: str
    kind: str
    channel: str
    title: str
    description: str
    service: str | None
    customer_tier: str
    impact: int
    urgency: int
    priority: str
    priority_overridden: bool
    status: str
    team: str | None
    assignee: str | None
    watchers: list[str]
    approval: str
    requirement: dict[str, Any] | None
    reopen_count: int
    submitted_at: datetime
    accepted_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    updated_at: datetime
    version: int


class RequestDetail(RequestView):
    links: list[dict[str, Any]] = []
    time_spent_minutes: int | None = Field(default=None, description="staff only")
    time_by_agent: dict[str, int] | None = Field(default=None, description="staff only")


class RequestPage(BaseModel):
    items: list[RequestView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class TimelineEntry(BaseModel):
    sequence: int
    event_id: str
    event_type: str
    at: datetime
    actor: str | None
    visibility: str
    summary: str
    data: dict[str, Any]


class Backlog(BaseModel):
    total: int
    by_status_priority: dict[str, dict[str, int]]
    ageing: dict[str, int]
    as_of: datetime
