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


# --- improvement actions (handbook 4.3, 4.4: plan, do, check, act) ------------------------------------------
@dataclass(frozen=True)
class ProposeImprovement:
    """Plan: an action answering one or more follow-ups or a trend, naming the scope whose satisfaction it should
    move (team, engineer, kind, business service: at least one)."""

    creates_stream: ClassVar[bool] = True  # the id is minted by the API

    improvement_id: str
    organisation_id: str  # the proposer's (the service provider's) organisation
    title: str
    plan: str
    followup_ids: tuple[str, ...] = ()
    trend: str | None = None
    team: str | None = None
    engineer: str | None = None
    kind: str | None = None
    service: str | None = None
    owner: str | None = None
    window_days: int = 30
    min_responses: int = 5
    # Filled by the aggregate's `prepare` from the event store: which of `followup_ids` exist.
    known_followups: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApproveImprovement:
    improvement_id: str
    note: str | None = None


@dataclass(frozen=True)
class RecordImplementation:
    """Do: when the change took effect and what was done."""

    improvement_id: str
    implemented_at: datetime
    description: str


@dataclass(frozen=True)
class VerifyImprovement:
    """Check: satisfaction of the scope in equal windows before and after the implementation. `before` and `after`
    are filled by the aggregate's `prepare` from the satisfaction read model, never by the caller."""

    improvement_id: str
    before: Any = None
    after: Any = None


@dataclass(frozen=True)
class CloseImprovement:
    """Act: the verified change is kept (or, not having helped, given up with a note saying why)."""

    improvement_id: str
    note: str | None = None


@dataclass(frozen=True)
class ReplanImprovement:
    """Act: back to plan after the check (a new cycle, to be approved again)."""

    improvement_id: str
    reason: str
    plan: str | None = None
