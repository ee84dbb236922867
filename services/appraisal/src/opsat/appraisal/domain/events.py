"""Events the appraisal service publishes on `opsat.appraisal.events`: catalogue versions and the life of
an appraisal period (calculation, adjustments, publication, appeals, close, incentives, improvement plans).

Scorecards travel as the whole card (`Scorecard.to_dict`): numbers are decimal strings, so a consumer
reads back exactly the digits that were calculated.
"""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar, Literal

from opsat.common.domain import DomainEvent, Instant


def _type(name: str) -> str:
    return f"opsat.appraisal.{name}"


class CatalogueDefined(DomainEvent):
    """A KPI catalogue version; `catalogue` is its whole spec (weights sum to 100 %)."""

    event_type: ClassVar[str] = _type("catalogue.defined")
    catalogue_id: str
    version: int
    catalogue: dict[str, Any]
    at: Instant
    by: str


class PeriodOpened(DomainEvent):
    """An appraisal period opened with the catalogue version, grades and incentive rules it is judged by."""

    event_type: ClassVar[str] = _type("period.opened")
    period_id: str
    organisation_id: str
    cadence: Literal["monthly", "quarterly"]
    starts_on: date
    ends_on: date  # the last day
    catalogue_version: int
    grades: dict[str, Any]
    incentives: dict[str, Any]
    appeal_days: int
    time_zone: str = "Asia/Shanghai"
    at: Instant
    by: str


class PeriodCalculated(DomainEvent):
    """A calculation from the facts known at `at`: its `scorecards` cards follow as `scorecard.calculated`
    events of the same append; a later calculation replaces them all until publication."""

    event_type: ClassVar[str] = _type("period.calculated")
    period_id: str
    catalogue_version: int
    scorecards: int
    at: Instant
    by: str


class ScorecardCalculated(DomainEvent):
    """One engineer's or team's card of a calculation (one event per card keeps every event small)."""

    event_type: ClassVar[str] = _type("scorecard.calculated")
    period_id: str
    subject: str
    scorecard: dict[str, Any]
    at: Instant


class ScoreAdjusted(DomainEvent):
    """A manager changed one KPI's score on one card, with a reason; the calculated score stays on the card."""

    event_type: ClassVar[str] = _type("score.adjusted")
    period_id: str
    subject: str
    kpi_id: str
    original_score: str
    score: str
    reason: str
    scorecard: dict[str, Any]
    at: Instant
    by: str


class PeriodPublished(DomainEvent):
    """The scorecards as they stand (calculated, adjusted) are published; appeals may be filed until
    `appeal_until`."""

    event_type: ClassVar[str] = _type("period.published")
    period_id: str
    scorecards: int
    appeal_until: Instant
    at: Instant
    by: str


class AppealFiled(DomainEvent):
    event_type: ClassVar[str] = _type("appeal.filed")
    period_id: str
    appeal_id: str
    subject: str
    kpi_id: str
    reason: str
    at: Instant
    by: str


class AppealUpheld(DomainEvent):
    """The reviewer kept the published score."""

    event_type: ClassVar[str] = _type("appeal.upheld")
    period_id: str
    appeal_id: str
    reason: str
    at: Instant
    by: str


class AppealAmended(DomainEvent):
    """The reviewer changed the score; the card is re-totalled and re-graded."""

    event_type: ClassVar[str] = _type("appeal.amended")
    period_id: str
    appeal_id: str
    subject: str
    kpi_id: str
    original_score: str
    score: str
    reason: str
    scorecard: dict[str, Any]
    at: Instant
    by: str


class PeriodClosed(DomainEvent):
    event_type: ClassVar[str] = _type("period.closed")
    period_id: str
    at: Instant
    by: str


class IncentiveAwarded(DomainEvent):
    """The grade's bonus coefficient and recognition for one subject of a closed period (7.3)."""

    event_type: ClassVar[str] = _type("incentive.awarded")
    period_id: str
    subject: str
    grade: str
    bonus_coefficient: str
    recognition: str | None
    at: Instant


class ImprovementPlanAssigned(DomainEvent):
    """A subject graded for improvement gets a plan (7.4): goals per weak KPI and a review date."""

    event_type: ClassVar[str] = _type("improvement_plan.assigned")
    period_id: str
    subject: str
    grade: str
    goals: list[dict[str, Any]]
    review_on: date
    at: Instant


PERIOD_EVENTS: tuple[type[DomainEvent], ...] = (
    PeriodOpened, PeriodCalculated, ScorecardCalculated, ScoreAdjusted, PeriodPublished, AppealFiled, AppealUpheld, AppealAmended,
    PeriodClosed, IncentiveAwarded, ImprovementPlanAssigned)
APPRAISAL_EVENTS: tuple[type[DomainEvent], ...] = (CatalogueDefined, *PERIOD_EVENTS)
