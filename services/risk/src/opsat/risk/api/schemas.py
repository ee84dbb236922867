"""HTTP bodies of the risk service's API (never the domain events). Unknown fields are refused; the domain
validates the values and names the offending field."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from opsat.common.isotime import AwareIsoDateTime, IsoDate, IsoDateTime  # noqa: F401  (used as s.IsoDate...)

# ISO-only date and date-time: pydantic alone would read 0 or "0" as Unix time, which no client means.
IsoAwareDateTime = AwareIsoDateTime

Text = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^[^\x00]*$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
Slug = Annotated[str, StringConstraints(min_length=1, max_length=41, pattern=r"^[a-z0-9][a-z0-9-]*$")]
Scale = Annotated[int, Field(description="1 (rare / negligible) to 5 (almost certain / severe)")]
Category = Literal["security", "compliance", "capacity", "vendor", "personnel", "technical", "service_quality"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdentifyBody(_Body):
    title: Name
    category: Category = Field(description="安全 security, 合规 compliance, 容量 capacity, 供应商 vendor, 人员 personnel, "
                                           "技术 technical, 服务质量 service_quality")
    description: Text
    subject_type: Literal["team", "service"] = Field(description="the risk affects a team or a business service")
    subject: Name
    owner: Name | None = None
    likelihood: Scale | None = Field(default=None, description="with impact: assessed at once (1-5)")
    impact: Scale | None = None


class AssessBody(_Body):
    likelihood: Scale
    impact: Scale
    rationale: Text


class MitigationBody(_Body):
    plan: Text
    due_on: IsoDate
    owner: Name | None = None


class ProgressBody(_Body):
    percent: Annotated[int, Field(description="0-100")]
    note: Text


class AcceptBody(_Body):
    rationale: Text


class CloseBody(_Body):
    reason: Text


class RuleBody(_Body):
    source: Literal["sla_breach", "incident", "feedback_response"]
    subject: Literal["team", "service"]
    threshold: Annotated[float, Field(allow_inf_nan=False, description="count: at least this many; mean_below: "
                                                                       "the mean score below this")]
    mode: Literal["count", "mean_below"] = "count"
    window_seconds: int | None = Field(default=None, description="count: the window (> 0); mean_below: optional")
    last_n: int | None = Field(default=None, description="mean_below: the subject's last N responses (> 0)")
    priorities: Annotated[list[Literal["P1", "P2", "P3", "P4"]], Field(max_length=4)] = []
    kinds: Annotated[list[Name], Field(max_length=20)] = []
    per_kind: bool = Field(default=False, description="count each request kind of the subject separately")
    category: Category = "service_quality"
    likelihood: Scale = 3
    impact: Scale = 3
    enabled: bool = True


class Step(_Body):
    step_id: Slug
    title: Name
    role: Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_-]*$")]


class Triggers(_Body):
    priorities: Annotated[list[Literal["P1", "P2", "P3", "P4"]], Field(max_length=4)] = []
    sources: Annotated[list[Literal["breach", "incident", "manual"]], Field(max_length=3)] = []
    teams: Annotated[list[Name], Field(max_length=100)] = []
    services: Annotated[list[Name], Field(max_length=100)] = []


class Resource(_Body):
    kind: Literal["spare_capacity", "vendor_contact", "backup_system", "other"]
    name: Name
    contact: Annotated[str, StringConstraints(max_length=500, pattern=r"^[^\x00]*$")] = ""


class PlanBody(_Body):
    title: Name
    steps: Annotated[list[Step], Field(min_length=1, max_length=100)]
    triggers: Triggers = Triggers()
    resources: Annotated[list[Resource], Field(max_length=100,
                                               description="standby resources: spare capacity, vendor contacts, "
                                                           "backup systems")] = []


class RotaBody(_Body):
    team: Name
    role: Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_-]*$")] = \
        "on_call_engineer"
    starts_on: Annotated[str, StringConstraints(max_length=10)] = Field(
        description="YYYY-MM-DD: the first hand-over's date; hand-overs repeat weekly on that weekday")
    members: Annotated[list[Name], Field(min_length=1, max_length=200, description="in rotation order")]
    time_zone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "Asia/Shanghai"
    handover_time: Annotated[str, StringConstraints(max_length=5)] = Field(default="09:00",
                                                                         description="HH:MM in time_zone")


class OverrideBody(_Body):
    person: Name
    start: IsoAwareDateTime
    end: IsoAwareDateTime
    reason: Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")] = ""


class ActivateBody(_Body):
    plan_id: Slug
    reason: Text
    team: Name | None = Field(default=None, description="whose rotas name the people on call")
    service: Name | None = None


class StepBody(_Body):
    step_id: Annotated[str, StringConstraints(min_length=1, max_length=41, pattern=r"^[^\x00]*$")]
    note: Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")] = ""


class StandDownBody(_Body):
    summary: Text


class ReviewAction(_Body):
    title: Name
    owner: Name
    due_on: IsoDate


class ReviewBody(_Body):
    findings: Annotated[list[Text], Field(min_length=1, max_length=100)]
    actions: Annotated[list[ReviewAction], Field(max_length=100)] = []


class ActionBody(_Body):
    action_id: Annotated[str, StringConstraints(min_length=1, max_length=41, pattern=r"^[^\x00]*$")]
    note: Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")] = ""


class _Accepted(BaseModel):
    version: int
    position: int
    event_ids: list[str]
    replayed: bool = Field(description="true when an Idempotency-Key repeat returned the first result")


class RiskAccepted(_Accepted):
    risk_id: str


class RuleAccepted(_Accepted):
    rule_id: str


class PlanAccepted(_Accepted):
    plan_id: str


class RotaAccepted(_Accepted):
    rota_id: str


class EmergencyAccepted(_Accepted):
    emergency_id: str


class RiskPage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = Field(description="pass back as `cursor` for the next page; null on the last")
