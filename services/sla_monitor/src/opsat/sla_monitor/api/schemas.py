"""HTTP bodies of the SLA monitor's API (never the domain events). Unknown fields are refused; the
domain validates the values and names the offending field."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from opsat.common.isotime import AwareIsoDateTime

Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00]*$")]
Seconds = Annotated[float, Field(ge=1, le=10 * 365 * 86400, allow_inf_nan=False,
                                 description="business seconds on the policy's calendar")]
Days = Annotated[list[Annotated[str, StringConstraints(max_length=10)]], Field(max_length=2000)]
Shifts = Annotated[list[Annotated[list[Annotated[str, StringConstraints(max_length=5)]], Field(max_length=2)]],
                   Field(max_length=24)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CalendarBody(_Body):
    time_zone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "Asia/Shanghai"
    always_open: bool = False
    hours: Annotated[dict[str, Shifts], Field(max_length=7, description=(
        "weekday (mon..sun) -> shifts, e.g. {\"mon\": [[\"09:00\", \"12:00\"], [\"13:30\", \"18:00\"]]}"))] = {}
    holidays: Days = []
    makeup_workdays: Days = Field(default=[], description="调休: otherwise non-working days that are worked")
    makeup_hours: Shifts | None = Field(default=None, description="shifts of a make-up day (default: the first "
                                                                  "weekday with hours)")


class DaysBody(_Body):
    holidays: Days = []
    makeup_workdays: Days = []


class PolicyBody(_Body):
    first_response_seconds: Seconds
    resolution_seconds: Seconds
    calendar_id: Annotated[str, StringConstraints(min_length=1, max_length=31)] = "cn-default"
    kinds: Annotated[list[Name], Field(max_length=20)] = []
    priorities: Annotated[list[Name], Field(max_length=4)] = []
    customer_tiers: Annotated[list[Name], Field(max_length=50)] = []
    services: Annotated[list[Name], Field(max_length=200)] = []
    warning_thresholds: Annotated[list[int], Field(max_length=10)] = [50, 80]
    escalations: Annotated[list[dict[str, Any]], Field(max_length=10, description=(
        "[{\"percent\": 50, \"role\": \"team_lead\"}, {\"percent\": 100, \"role\": \"manager\"}, ...]"))] = [
        {"percent": 50, "role": "team_lead"}, {"percent": 100, "role": "manager"},
        {"percent": 150, "role": "director"}]
    stall_after_seconds: Seconds = Field(default=9 * 3600, description=(
        "business seconds without any activity on a request being worked on before it is flagged as stalled"))
    next_reply_seconds: Seconds | None = Field(default=None, description=(
        "periodic update target: after the first response, business seconds (paused time excluded) within which "
        "each next public staff reply is due until resolve; null: none"))
    ola_seconds: Seconds | None = Field(default=None, description=(
        "OLA target of the team holding a request: business seconds (paused time excluded) from when the team took "
        "it; null: none"))
    ola_teams: Annotated[dict[Name, Seconds], Field(max_length=200, description=(
        "per-team OLA targets overriding ola_seconds, e.g. {\"network\": 7200}"))] = {}


Reason = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^[^\x00]*$")]
TargetField = Annotated[Literal["response", "resolution"], Field(description="the breached target")]


class ExcusalRequestBody(_Body):
    target: TargetField
    cause: Literal["customer", "third_party"] = Field(description="who caused the breach")
    reason: Reason


class ExcusalDecisionBody(_Body):
    target: TargetField
    reason: Reason


class PolicyChangeBody(_Body):
    policy_id: Annotated[str, StringConstraints(min_length=1, max_length=31, pattern=r"^[a-z0-9][a-z0-9-]*$")] = \
        Field(description="the policy the clock runs under from now on (its current version)")
    reason: Reason


class OutageBody(_Body):
    service: Name = Field(description="a configured business service")
    severity: Literal["critical", "major", "minor"]
    started_at: AwareIsoDateTime
    ended_at: AwareIsoDateTime | None = Field(default=None, description="null while the outage lasts")


class OutageEndBody(_Body):
    ended_at: AwareIsoDateTime


class _Accepted(BaseModel):
    version: int
    position: int
    event_ids: list[str]
    replayed: bool = Field(description="true when an Idempotency-Key repeat returned the first result")


class CalendarAccepted(_Accepted):
    calendar_id: str


class PolicyAccepted(_Accepted):
    policy_id: str


class ClockAccepted(_Accepted):
    request_id: str


class OutageAccepted(_Accepted):
    outage_id: str


class WhatIfBody(_Body):
    since: AwareIsoDateTime = Field(description="clocks started from this instant (inclusive)")
    until: AwareIsoDateTime = Field(description="clocks started before this instant")
    policy: PolicyBody = Field(description="the draft policy (not stored)")
    calendar: CalendarBody | None = Field(default=None, description=(
        "a draft calendar (not stored); default: each clock's own calendar version"))
    only_matching: bool = Field(default=True, description=(
        "only the requests the draft policy's kinds, priorities, tiers and services match"))
    limit: Annotated[int, Field(ge=1, le=1000)] = 200
