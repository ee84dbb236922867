"""Commands of the appraisal service. The scorecards a calculation records are computed by the
application from the facts read model (deterministically, `scorecards.calculate`) and carried in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, ClassVar

from opsat.appraisal.domain.scorecards import Scorecard


@dataclass(frozen=True)
class DefineCatalogue:
    """A new version of the KPI catalogue; periods opened afterwards are judged by it."""

    may_create: ClassVar[bool] = True
    catalogue_id: str
    kpis: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class OpenPeriod:
    creates_stream: ClassVar[bool] = True
    period_id: str
    cadence: str
    starts_on: date
    catalogue_version: int
    grades: dict[str, Any] | None = None
    incentives: dict[str, Any] | None = None
    appeal_days: int = 7
    time_zone: str = "Asia/Shanghai"  # whose days the period's days are


@dataclass(frozen=True)
class CalculatePeriod:
    period_id: str
    scorecards: tuple[Scorecard, ...] = field(default=())


@dataclass(frozen=True)
class AdjustScore:
    period_id: str
    subject: str
    kpi_id: str
    score: Any
    reason: str


@dataclass(frozen=True)
class PublishPeriod:
    period_id: str


@dataclass(frozen=True)
class FileAppeal:
    generated_ids: ClassVar[tuple[str, ...]] = ("appeal_id",)
    period_id: str
    subject: str
    kpi_id: str
    reason: str
    appeal_id: str = ""


@dataclass(frozen=True)
class ReviewAppeal:
    period_id: str
    appeal_id: str
    outcome: str  # upheld | amended
    reason: str
    score: Any = None


@dataclass(frozen=True)
class ClosePeriod:
    period_id: str
