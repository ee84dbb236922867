"""HTTP bodies of the appraisal API (never the domain events). Unknown fields are refused; the domain
validates the values and names the offending field."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from opsat.appraisal.domain.facts import FACTS

Text = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^[^\x00]*$")]
Label = Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=r"^[^\x00]*$")]
Slug = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]
Number = Annotated[float, Field(ge=-1e9, le=1e9, allow_inf_nan=False)]
Score = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Subject = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00/]*$")]
FactName = Annotated[str, Field(description=f"one of: {', '.join(FACTS)}", max_length=40)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KpiSpec(_Body):
    kpi_id: Slug
    label_zh: Label
    label_en: Label
    measure: Literal["rate", "mean", "count"] = Field(description="rate: 100 × numerator / denominator; mean: "
                                                                  "numerator / denominator; count: numerator")
    numerator: Annotated[list[FactName], Field(min_length=1, max_length=10)]
    denominator: FactName | None = None
    direction: Literal["higher", "lower"] = Field(default="higher", description="which is better")
    target: Number = Field(description="the value that scores 100")
    floor: Number = Field(description="the value that scores 0")
    weight: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False, description="percent; all sum to 100")]


class CatalogueBody(_Body):
    kpis: Annotated[list[KpiSpec], Field(min_length=1, max_length=30)]


class GradeLevel(_Body):
    grade: Annotated[str, StringConstraints(min_length=1, max_length=8)]
    at_least: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]


class Grades(_Body):
    levels: Annotated[list[GradeLevel], Field(min_length=1, max_length=10, description="best first")]
    lowest: Annotated[str, StringConstraints(min_length=1, max_length=8)] = "D"


class IncentiveRule(_Body):
    grade: Annotated[str, StringConstraints(min_length=1, max_length=8)]
    bonus_coefficient: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)]
    recognition: Annotated[str, StringConstraints(max_length=80)] | None = None
    improvement_plan: bool = False


class Incentives(_Body):
    rules: Annotated[list[IncentiveRule], Field(min_length=1, max_length=10)]
    goal_below: Score = 70
    review_days: Annotated[int, Field(ge=1, le=366)] = 30


class OpenBody(_Body):
    cadence: Literal["monthly", "quarterly"] = "monthly"
    starts_on: date = Field(description="the first day of the month (or quarter)")
    catalogue_version: Annotated[int, Field(ge=1, le=10**6)] | None = Field(
        default=None, description="default: the current catalogue")
    grades: Grades | None = Field(default=None, description="default: A ≥ 90, B ≥ 80, C ≥ 70, else D")
    incentives: Incentives | None = Field(default=None, description="default: A 1.2, B 1.0, C 0.8, D 0.5 + plan")
    appeal_days: Annotated[int, Field(ge=1, le=90)] = 7
    time_zone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "Asia/Shanghai"


class AdjustBody(_Body):
    subject: Subject
    kpi_id: Slug
    score: Score
    reason: Text


class AppealBody(_Body):
    subject: Subject
    kpi_id: Slug
    reason: Text


class ReviewBody(_Body):
    appeal_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    outcome: Literal["upheld", "amended"]
    reason: Text
    score: Score | None = Field(default=None, description="the new score, when amended")


class PeriodAccepted(BaseModel):
    """What every period command answers: the stream's new version (send it back as If-Match or min_version)."""

    period_id: str
    version: int
    position: int
    event_ids: list[str]
    replayed: bool = Field(description="true when an Idempotency-Key repeat returned the first result")


class CatalogueAccepted(BaseModel):
    catalogue_id: str
    version: int
    position: int
    event_ids: list[str]
    replayed: bool
