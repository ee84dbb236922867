"""HTTP bodies of the feedback API (never the domain events). Unknown fields are refused; the domain validates
the values and names the offending field."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from opsat.common.isotime import AwareIsoDateTime, IsoDateTime  # noqa: F401  (IsoDateTime used as s.IsoDateTime)

NO_NUL = r"^[^\x00]*$"
Label = Annotated[str, StringConstraints(min_length=1, max_length=300, pattern=NO_NUL)]
Text = Annotated[str, StringConstraints(max_length=4000, pattern=NO_NUL)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DimensionBody(_Body):
    key: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    weight: Annotated[int, Field(description="whole per cent; the weights of a template sum to 100")]
    label_zh: Label
    label_en: Label


class TemplateBody(_Body):
    dimensions: Annotated[list[DimensionBody], Field(min_length=1, max_length=12)]
    nps_label_zh: Label | None = None
    nps_label_en: Label | None = None
    comment_label_zh: Label | None = None
    comment_label_en: Label | None = None
    anonymous: bool | None = Field(default=None, description="scores count; names are withheld from staff views")
    comment_required_below: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    follow_up_below: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    max_comment_chars: Annotated[int, Field(ge=1, le=10_000)] | None = None


class ContactBody(_Body):
    organisation_id: Name
    email: Annotated[str, StringConstraints(min_length=3, max_length=254)]
    language: Literal["zh", "en"] = "zh"
    name: Name | None = None


class ComplaintBody(_Body):
    complaint: Annotated[str, StringConstraints(min_length=1, max_length=4000, pattern=NO_NUL)]
    request_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")] | None \
        = None
    team: Name | None = None
    assignee: Name | None = None
    organisation_id: Name | None = Field(default=None, description="staff filing for a customer: the customer's "
                                                                   "organisation (default: the caller's)")
    customer_id: Name | None = Field(default=None, description="staff filing for a customer: the customer's id")


class CampaignBody(_Body):
    name: Name
    contact_ids: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=200,
                                                                 pattern=r"^[A-Za-z0-9_.:@-]+$")]],
                           Field(min_length=1, max_length=1000, description="at most 1000: a larger list would not "
                                                                            "fit in one request body")]
    template_id: Annotated[str, StringConstraints(min_length=1, max_length=31)] = "default"


class NoteBody(_Body):
    note: Text


Scope = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
FollowUpRef = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^fu-[a-z0-9-]+$")]


class ImprovementBody(_Body):
    title: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
    plan: Annotated[str, StringConstraints(min_length=1, max_length=4000, pattern=NO_NUL)] = Field(
        description="what will be changed, and how")
    followup_ids: Annotated[list[FollowUpRef], Field(max_length=50, description="the follow-ups the action answers")] \
        = []
    trend: Text | None = Field(default=None, description="the trend the action answers (when no follow-up is named)")
    team: Scope | None = Field(default=None, description="scope: at least one of team, engineer, kind and service")
    engineer: Scope | None = None
    kind: Scope | None = None
    service: Scope | None = Field(default=None, description="the business service")
    owner: Scope | None = Field(default=None, description="who carries the action out (default: the proposer)")
    window_days: int = Field(default=30, description="length in days of each of the two windows the check compares "
                                                     "(1-365)")
    min_responses: int = Field(default=5, description="fewer responses than this in either window: insufficient data "
                                                      "(1-1000)")


class OptionalNoteBody(_Body):
    note: Text | None = None


class ImplementationBody(_Body):
    implemented_at: AwareIsoDateTime = Field(description="when the change took effect (with a time zone offset; not in "
                                                    "the future, at most 365 days ago)")
    description: Annotated[str, StringConstraints(min_length=1, max_length=4000, pattern=NO_NUL)] = Field(
        description="what was done")


class ReplanBody(_Body):
    reason: Text
    plan: Text | None = Field(default=None, description="the revised plan (default: the current one)")


class ResolutionBody(_Body):
    resolution: Text


class ReactionBody(_Body):
    accepted: bool
    comment: Text | None = None


Token = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class FormRequest(_Body):
    token: Token


class AnswerBody(_Body):
    token: Token
    template_version: Annotated[int, Field(ge=1, le=1_000_000, description="the version the form showed")]
    ratings: Annotated[dict[Annotated[str, StringConstraints(max_length=40)], int], Field(
        max_length=12, description="dimension key -> 1..5; every dimension of the template, none pre-selected")]
    nps: int = Field(description="0..10: how likely to recommend")
    comment: Annotated[str, StringConstraints(max_length=20_000)] | None = Field(
        default=None, description="required below the template's threshold; at most its max_comment_chars")


class _Accepted(BaseModel):
    version: int
    position: int
    event_ids: list[str]
    replayed: bool = Field(description="true when an Idempotency-Key repeat returned the first result")


class TemplateAccepted(_Accepted):
    template_id: str


class ContactAccepted(_Accepted):
    contact_id: str


class CampaignAccepted(_Accepted):
    campaign_id: str


class FollowUpAccepted(_Accepted):
    followup_id: str


class ImprovementAccepted(_Accepted):
    improvement_id: str


class Figures(BaseModel):
    responses: int
    csat_mean: float | None
    satisfied_percent: float | None


class ImprovementView(BaseModel):
    improvement_id: str
    organisation_id: str
    title: str
    plan: str
    followup_ids: list[str]
    trend: str | None
    team: str | None
    engineer: str | None
    kind: str | None
    service: str | None
    owner: str
    proposed_by: str
    approved_by: str | None
    status: Literal["proposed", "approved", "implemented", "verified", "closed"]
    cycle: int
    window_days: int
    min_responses: int
    implemented_at: datetime | None
    implementation: str | None
    verify_due_at: datetime | None
    verdict: Literal["improved", "not_improved", "insufficient_data"] | None
    before: Figures | None
    after: Figures | None
    proposed_at: datetime
    history: list[dict[str, Any]]
    updated_at: datetime


class ImprovementPage(BaseModel):
    items: list[ImprovementView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class AnswerAccepted(BaseModel):
    survey_id: str
    score: float
    band: str
    thanks: str


class SurveyForm(BaseModel):
    survey_id: str
    request_id: str
    language: str
    expires_at: Any
    template_id: str
    template_version: int
    dimensions: list[dict[str, Any]]
    nps_label: str
    comment_label: str
    comment_required_below: float
    max_comment_chars: int
    anonymous: bool
