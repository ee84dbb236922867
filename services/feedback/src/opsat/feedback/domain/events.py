"""Events the feedback service publishes on `opsat.feedback.events`.

Streams: templates (`template_id`), contacts (`contact_id`, the requester's subject id), surveys
(`svy-...`), follow-ups (`fu-...`) and improvement actions (`imp-...`). Fields marked `x-personal` hold contact
details (README, "Personal data in events"). No event carries a survey's token: only its SHA-256 hash.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from opsat.common.domain import DomainEvent, Instant

Personal = {"x-personal": True}
Language = Literal["zh", "en"]


def _type(name: str) -> str:
    return f"opsat.feedback.{name}"


class TemplateDefined(DomainEvent):
    """A survey template was created or replaced; `template` is the whole spec of this version."""

    event_type: ClassVar[str] = _type("template.defined")
    template_id: str
    version: int
    template: dict[str, Any]
    at: Instant
    by: str


class ContactRegistered(DomainEvent):
    """Where a customer contact receives surveys (registered or changed by staff or an enterprise directory)."""

    event_type: ClassVar[str] = _type("contact.registered")
    contact_id: str
    organisation_id: str
    email: str = Field(json_schema_extra=Personal)
    name: str | None = Field(default=None, json_schema_extra=Personal)
    language: Language
    at: Instant
    by: str


class CampaignLaunched(DomainEvent):
    """A relationship survey (handbook 4.1): the listed customer contacts each get a survey of the template."""

    event_type: ClassVar[str] = _type("campaign.launched")
    campaign_id: str
    name: str
    template_id: str
    contact_ids: list[str]
    at: Instant
    by: str


class SurveyEvent(DomainEvent):
    survey_id: str
    at: Instant


class SurveyIssued(SurveyEvent):
    """A transactional survey for a closed request: the facts it is judged against, the template version it asks,
    the hash of its one-time token and when it is reminded and expires."""

    event_type: ClassVar[str] = _type("survey.issued")
    organisation_id: str
    request_id: str | None = None  # None: a relationship survey of a campaign
    campaign_id: str | None = None
    requester_id: str
    team: str | None = None
    assignee: str | None = None
    kind: str | None = None
    priority: str | None = None
    service: str | None = None
    template: dict[str, Any]
    token_hash: str  # SHA-256 hex of the token; the token itself is never stored
    language: Language
    recipient: str | None = Field(default=None, json_schema_extra=Personal)  # None: no contact address known
    remind_at: Instant
    expires_at: Instant


class SurveyReminded(SurveyEvent):
    """The one reminder is due (unanswered after the reminder delay): a reminder email goes out."""

    event_type: ClassVar[str] = _type("survey.reminded")


class SurveyExpired(SurveyEvent):
    event_type: ClassVar[str] = _type("survey.expired")


class SurveyAnswered(SurveyEvent):
    """The respondent answered; score, band and NPS category follow from the template version answered."""

    event_type: ClassVar[str] = _type("survey.answered")
    # The subject, copied from the issue: None for a relationship survey, or on answers recorded before
    # these fields existed.
    request_id: str | None = None
    campaign_id: str | None = None
    team: str | None = None
    assignee: str | None = None
    template_id: str
    template_version: int
    ratings: dict[str, int]
    nps: int
    comment: str | None = None
    score: float
    band: str
    nps_category: Literal["promoter", "passive", "detractor"]
    follow_up_reasons: list[str]  # low_score | detractor; non-empty opens a follow-up


class MailAttempted(SurveyEvent):
    """One attempt to hand a survey's email to the SMTP relay. `outcome` failed: retried later;
    bounced: the relay refused the address for good; undeliverable: no address is known."""

    event_type: ClassVar[str] = _type("survey.mail_attempted")
    purpose: Literal["invitation", "reminder"]
    attempt: int
    outcome: Literal["sent", "failed", "bounced", "undeliverable"]
    error: str | None = None
    next_attempt_at: Instant | None = None


class FollowUpEvent(DomainEvent):
    followup_id: str
    at: Instant
    by: str


class FollowUpOpened(FollowUpEvent):
    """Closed loop (5.4): a low score, an NPS detractor or a complaint filed directly opens a follow-up."""

    event_type: ClassVar[str] = _type("followup.opened")
    organisation_id: str
    source: Literal["survey", "complaint"]
    reasons: list[str]  # low_score | detractor | complaint
    survey_id: str | None = None
    request_id: str | None = None
    customer_id: str | None = None
    team: str | None = None
    assignee: str | None = None
    complaint: str | None = None
    owner: str
    due_at: Instant


class FollowUpContacted(FollowUpEvent):
    event_type: ClassVar[str] = _type("followup.contacted")
    note: str


class FollowUpResolved(FollowUpEvent):
    event_type: ClassVar[str] = _type("followup.resolved")
    resolution: str


class CustomerReacted(FollowUpEvent):
    """The customer's reaction to the resolution: accepted closes the follow-up, otherwise it opens again, due
    anew at `due_at` (and flagged overdue again if unresolved by then)."""

    event_type: ClassVar[str] = _type("followup.customer_reacted")
    accepted: bool
    comment: str | None = None
    due_at: Instant | None = None  # a rejection's new due time; None when accepted


class FollowUpOverdue(FollowUpEvent):
    """Due time passed before the follow-up was resolved (flagged once per due time: a rejected resolution sets a
    new one)."""

    event_type: ClassVar[str] = _type("followup.overdue")
    due_at: Instant


class SatisfactionFigures(BaseModel):
    """Satisfaction of a scope in one window: how many responses, their mean score (0-100) and the share scoring
    satisfied or better (>= 75); the mean and share are null without responses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    responses: int
    csat_mean: float | None
    satisfied_percent: float | None


class ImprovementEvent(DomainEvent):
    improvement_id: str
    at: Instant
    by: str


class ImprovementProposed(ImprovementEvent):
    """Plan (handbook 4.3, 4.4): an improvement action answering follow-ups or a trend, and the scope (team,
    engineer, kind, business service) whose satisfaction it should move; verified over `window_days` either side
    of its implementation, with at least `min_responses` in each window."""

    event_type: ClassVar[str] = _type("improvement.proposed")
    organisation_id: str
    title: str
    plan: str
    followup_ids: list[str]
    trend: str | None = None
    team: str | None = None
    engineer: str | None = None
    kind: str | None = None
    service: str | None = None
    owner: str
    window_days: int
    min_responses: int


class ImprovementApproved(ImprovementEvent):
    """A manager other than the proposer approved the plan."""

    event_type: ClassVar[str] = _type("improvement.approved")
    note: str | None = None


class ImprovementImplemented(ImprovementEvent):
    """Do: the change took effect at `implemented_at`. It may be verified once the window after it has ended;
    the service checks it itself at `verify_due_at` (that end plus a grace for late answers to be counted)."""

    event_type: ClassVar[str] = _type("improvement.implemented")
    implemented_at: Instant
    description: str
    verify_due_at: Instant


class ImprovementVerified(ImprovementEvent):
    """Check: the scope's satisfaction in [before_from, implemented_at) against [implemented_at, after_until),
    from the satisfaction read model. improved: the mean score rose and the share satisfied did not fall;
    insufficient_data: a window has fewer than `min_responses` responses."""

    event_type: ClassVar[str] = _type("improvement.verified")
    before_from: Instant
    implemented_at: Instant
    after_until: Instant
    before: SatisfactionFigures
    after: SatisfactionFigures
    min_responses: int
    verdict: Literal["improved", "not_improved", "insufficient_data"]


class ImprovementClosed(ImprovementEvent):
    """Act: the action is closed after its check (kept if it helped; given up with a note if not)."""

    event_type: ClassVar[str] = _type("improvement.closed")
    verdict: str
    note: str | None = None


class ImprovementReplanned(ImprovementEvent):
    """Act: back to plan after the check; the new cycle must be approved again."""

    event_type: ClassVar[str] = _type("improvement.replanned")
    cycle: int
    reason: str
    plan: str


SURVEY_EVENTS = (SurveyIssued, SurveyReminded, SurveyExpired, SurveyAnswered, MailAttempted)
FOLLOWUP_EVENTS = (FollowUpOpened, FollowUpContacted, FollowUpResolved, CustomerReacted, FollowUpOverdue)
IMPROVEMENT_EVENTS = (ImprovementProposed, ImprovementApproved, ImprovementImplemented, ImprovementVerified,
                      ImprovementClosed, ImprovementReplanned)
FEEDBACK_EVENTS: tuple[type[DomainEvent], ...] = (TemplateDefined, ContactRegistered, CampaignLaunched, *SURVEY_EVENTS,
                                                  *FOLLOWUP_EVENTS, *IMPROVEMENT_EVENTS)
