"""Commands of the feedback service. Templates and contacts are routed (staff); surveys are issued by the
reaction to intake's closures, answered through the public token endpoint, reminded and expired by their
deadlines; follow-ups are opened by low answers and complaints and moved on by staff."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, ClassVar


@dataclass(frozen=True)
class DefineTemplate:
    """Create or replace a survey template (a new version; surveys already issued keep theirs)."""

    may_create: ClassVar[bool] = True  # the shipped default or a new one: the domain decides

    template_id: str
    dimensions: tuple[dict[str, Any], ...]
    nps_label_zh: str | None = None
    nps_label_en: str | None = None
    comment_label_zh: str | None = None
    comment_label_en: str | None = None
    anonymous: bool | None = None
    comment_required_below: float | None = None
    follow_up_below: float | None = None
    max_comment_chars: int | None = None

    def options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("template_id", "dimensions")}


@dataclass(frozen=True)
class RegisterContact:
    """Register or change where a customer contact (a requester's subject id) receives surveys."""

    may_create: ClassVar[bool] = True

    contact_id: str
    organisation_id: str
    email: str
    language: str = "zh"
    name: str | None = None


@dataclass(frozen=True)
class LaunchCampaign:
    """Send a relationship survey to a list of customer contacts (each gets one survey)."""

    may_create: ClassVar[bool] = True  # the domain refuses a second launch

    campaign_id: str
    name: str
    contact_ids: tuple[str, ...]
    template_id: str = "default"


@dataclass(frozen=True)
class IssueSurvey:
    may_create: ClassVar[bool] = True  # the domain refuses a second issue of one survey id

    survey_id: str
    organisation_id: str
    request_id: str | None
    requester_id: str
    template: dict[str, Any]
    token_hash: str
    language: str
    recipient: str | None
    validity: timedelta
    reminder_after: timedelta
    team: str | None = None
    assignee: str | None = None
    kind: str | None = None
    priority: str | None = None
    service: str | None = None
    campaign_id: str | None = None


@dataclass(frozen=True)
class AnswerSurvey:
    survey_id: str
    token_hash: str
    template_version: int
    ratings: dict[str, Any]
    nps: Any
    comment: str | None = None


@dataclass(frozen=True)
class RemindSurvey:
    survey_id: str


@dataclass(frozen=True)
class ExpireSurvey:
    survey_id: str


@dataclass(frozen=True)
class RecordMailAttempt:
    survey_id: str
    purpose: str
    attempt: int
    outcome: str
    error: str | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class OpenFollowUp:
    """Opened by a low answer (reaction) or a complaint filed directly (customer or staff)."""

    may_create: ClassVar[bool] = True  # a reaction's follow-up id is derived from the survey: opened once

    followup_id: str
    organisation_id: str
    source: str  # survey | complaint
    reasons: tuple[str, ...]
    survey_id: str | None = None
    request_id: str | None = None
    customer_id: str | None = None
    team: str | None = None
    assignee: str | None = None
    complaint: str | None = None
    owner: str | None = None


@dataclass(frozen=True)
class RecordContact:
    followup_id: str
    note: str


@dataclass(frozen=True)
class ResolveFollowUp:
    followup_id: str
    resolution: str


@dataclass(frozen=True)
class RecordCustomerReaction:
    followup_id: str
    accepted: bool
    comment: str | None = None


@dataclass(frozen=True)
class MarkFollowUpOverdue:
    """The follow-up's deadline: flag it overdue if still unresolved."""

    followup_id: str
