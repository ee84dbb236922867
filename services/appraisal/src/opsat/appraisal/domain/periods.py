"""An appraisal period's life (7.2): open → calculated (re-calculable) → adjusted → published → appeal
window → closed, with incentives and improvement plans awarded at close (7.3, 7.4).

Once published, the cards change only through an appeal: facts that arrive later show as a pending
difference in the queries (a fresh calculation beside the published card), never folded in silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from opsat.appraisal.domain import commands as c
from opsat.appraisal.domain import events as ev
from opsat.appraisal.domain.incentives import DEFAULT_INCENTIVES, IncentiveRules
from opsat.appraisal.domain.kpis import as_number
from opsat.appraisal.domain.scorecards import DEFAULT_GRADES, NOT_GRADED, GradeScale, Scorecard, cents
from opsat.common.domain import Actor, Conflict, DomainEvent, Forbidden, InvalidInput, InvalidTransition, NotFound, Role

PERIOD_ID = re.compile(r"^[0-9]{4}-[a-z0-9-]{1,35}$")  # starts with its year: never a catalogue id
CADENCES = {"monthly": 1, "quarterly": 3}
MAX_REASON = 2000
MANAGERS = (Role.manager, Role.admin)
REVIEWERS = (Role.manager, Role.admin)


@dataclass(frozen=True)
class Appeal:
    appeal_id: str
    subject: str
    kpi_id: str
    reason: str
    by: str
    outcome: str | None = None  # None while open; upheld | amended


@dataclass(frozen=True)
class Period:
    period_id: str
    organisation_id: str
    cadence: str
    starts_on: date
    ends_on: date
    catalogue_version: int
    grades: GradeScale
    incentives: IncentiveRules
    appeal_days: int
    time_zone: str = "Asia/Shanghai"
    status: str = "open"  # open | calculated | published | closed
    scorecards: dict[str, Scorecard] = field(default_factory=dict)
    appeal_until: datetime | None = None
    appeals: dict[str, Appeal] = field(default_factory=dict)

    @property
    def open_appeals(self) -> list[Appeal]:
        return [a for a in self.appeals.values() if a.outcome is None]


def period_end(cadence: str, starts_on: date) -> date:
    """The last day of a period that starts on the first day of a month (monthly) or quarter (quarterly)."""
    months = CADENCES[cadence]
    month = starts_on.month - 1 + months
    return date(starts_on.year + month // 12, month % 12 + 1, 1) - timedelta(days=1)


def evolve(state: Period | None, event: DomainEvent) -> Period:
    match event:
        case ev.PeriodOpened():
            return Period(event.period_id, event.organisation_id, event.cadence, event.starts_on, event.ends_on,
                          event.catalogue_version, GradeScale.from_spec(event.grades),
                          IncentiveRules.from_spec(event.incentives), event.appeal_days, event.time_zone)
    assert state is not None, f"{event.event_type} before period.opened"
    match event:
        case ev.PeriodCalculated():
            return replace(state, status="calculated", scorecards={})
        case ev.ScorecardCalculated():
            return replace(state, scorecards={**state.scorecards, event.subject: Scorecard.from_dict(event.scorecard)})
        case ev.ScoreAdjusted() | ev.AppealAmended():
            card = Scorecard.from_dict(event.scorecard)
            state = replace(state, scorecards={**state.scorecards, card.subject: card})
            if isinstance(event, ev.AppealAmended):
                state = _settled(state, event.appeal_id, "amended")
            return state
        case ev.PeriodPublished():
            return replace(state, status="published", appeal_until=event.appeal_until)
        case ev.AppealFiled():
            appeal = Appeal(event.appeal_id, event.subject, event.kpi_id, event.reason, event.by)
            return replace(state, appeals={**state.appeals, appeal.appeal_id: appeal})
        case ev.AppealUpheld():
            return _settled(state, event.appeal_id, "upheld")
        case ev.PeriodClosed():
            return replace(state, status="closed")
        case ev.IncentiveAwarded() | ev.ImprovementPlanAssigned():
            return state
    raise AssertionError(f"unhandled event {event.event_type}")


def _settled(state: Period, appeal_id: str, outcome: str) -> Period:
    return replace(state, appeals={**state.appeals, appeal_id: replace(state.appeals[appeal_id], outcome=outcome)})


def decide(state: Period | None, command: Any, actor: Actor, now: datetime) -> list[DomainEvent]:
    if isinstance(command, c.OpenPeriod):
        return _open(state, command, actor, now)
    if state is None:
        raise NotFound(f"period {command.period_id} does not exist")
    match command:
        case c.CalculatePeriod():
            _require(actor, MANAGERS, "a manager calculates a period")
            if state.status not in ("open", "calculated"):
                raise InvalidTransition(f"the period is {state.status}: its scorecards change only through appeals",
                                        code="already_published")
            cards = sorted(command.scorecards, key=lambda card: card.subject)
            if any(card.catalogue_version != state.catalogue_version for card in cards):
                raise InvalidInput("scorecards are calculated with the period's catalogue version",
                                   field="catalogue_version")
            return [ev.PeriodCalculated(period_id=state.period_id, catalogue_version=state.catalogue_version,
                                        scorecards=len(cards), at=now, by=actor.id),
                    *(ev.ScorecardCalculated(period_id=state.period_id, subject=card.subject, scorecard=card.to_dict(),
                                             at=now) for card in cards)]
        case c.AdjustScore():
            _require(actor, MANAGERS, "a manager adjusts a score")
            if state.status != "calculated":
                raise InvalidTransition(f"scores are adjusted after calculation and before publication "
                                        f"(the period is {state.status})")
            reason = _reason(command.reason)
            card = _card(state, command.subject)
            score = _score(command.score)
            line = card.line(command.kpi_id)
            adjusted = card.with_score(command.kpi_id, score, reason, state.grades)
            original = line.adjusted_from if line and line.adjusted_from is not None else line.score if line else None
            return [ev.ScoreAdjusted(period_id=state.period_id, subject=card.subject, kpi_id=command.kpi_id,
                                     original_score=str(original), score=str(cents(score)), reason=reason,
                                     scorecard=adjusted.to_dict(), at=now, by=actor.id)]
        case c.PublishPeriod():
            _require(actor, MANAGERS, "a manager publishes a period")
            if state.status != "calculated":
                code = "already_published" if state.status in ("published", "closed") else "not_calculated"
                raise InvalidTransition(f"only a calculated period is published (it is {state.status})", code=code)
            until = now + timedelta(days=state.appeal_days)
            return [ev.PeriodPublished(period_id=state.period_id, appeal_until=until, at=now, by=actor.id,
                                       scorecards=len(state.scorecards))]
        case c.FileAppeal():
            if state.status != "published":
                raise InvalidTransition(f"appeals are filed on published scorecards (the period is {state.status})")
            assert state.appeal_until is not None
            if now > state.appeal_until:
                raise Conflict(f"the appeal window closed at {state.appeal_until.isoformat()}",
                               code="appeal_window_closed")
            card = _card(state, command.subject)
            if actor.id != card.subject and not actor.has(Role.team_lead, Role.manager, Role.admin):
                raise Forbidden("an engineer appeals their own scorecard; a team lead or manager any")
            line = card.line(command.kpi_id)
            if line is None or line.score is None:
                raise InvalidInput(f"{command.kpi_id} has no score on this scorecard", field="kpi_id")
            if any(a.subject == card.subject and a.kpi_id == command.kpi_id for a in state.open_appeals):
                raise Conflict("an appeal on this score is already open", code="appeal_open")
            return [ev.AppealFiled(period_id=state.period_id, appeal_id=command.appeal_id, subject=card.subject,
                                   kpi_id=command.kpi_id, reason=_reason(command.reason), at=now, by=actor.id)]
        case c.ReviewAppeal():
            _require(actor, REVIEWERS, "a manager reviews appeals")
            appeal = state.appeals.get(command.appeal_id)
            if appeal is None:
                raise NotFound(f"appeal {command.appeal_id} does not exist", field="appeal_id")
            if appeal.outcome is not None:
                raise InvalidTransition(f"the appeal was already {appeal.outcome}", code="already_reviewed")
            if appeal.by == actor.id:
                raise Forbidden("an appeal is reviewed by someone other than who filed it")
            reason = _reason(command.reason)
            if command.outcome == "upheld":
                if command.score is not None:
                    raise InvalidInput("an upheld appeal keeps the score: send no score", field="score")
                return [ev.AppealUpheld(period_id=state.period_id, appeal_id=appeal.appeal_id, reason=reason,
                                        at=now, by=actor.id)]
            if command.outcome != "amended":
                raise InvalidInput("outcome is 'upheld' or 'amended'", field="outcome")
            if command.score is None:
                raise InvalidInput("an amended appeal gives the new score", field="score")
            score = _score(command.score)
            card = state.scorecards[appeal.subject]
            line = card.line(appeal.kpi_id)
            assert line is not None and line.score is not None
            amended = card.with_score(appeal.kpi_id, score, reason, state.grades)
            return [ev.AppealAmended(period_id=state.period_id, appeal_id=appeal.appeal_id, subject=appeal.subject,
                                     kpi_id=appeal.kpi_id, original_score=str(line.score), score=str(cents(score)),
                                     reason=reason, scorecard=amended.to_dict(), at=now, by=actor.id)]
        case c.ClosePeriod():
            _require(actor, MANAGERS, "a manager closes a period")
            if state.status != "published":
                raise InvalidTransition(f"a period closes after publication (it is {state.status})")
            assert state.appeal_until is not None
            if now <= state.appeal_until:
                raise Conflict(f"the appeal window is open until {state.appeal_until.isoformat()}",
                               code="appeal_window_open")
            if state.open_appeals:
                raise Conflict(f"{len(state.open_appeals)} appeal(s) await review", code="appeals_open")
            return [ev.PeriodClosed(period_id=state.period_id, at=now, by=actor.id), *_awards(state, now)]
    raise InvalidInput(f"{type(command).__name__} is not a period command")


def _open(state: Period | None, command: c.OpenPeriod, actor: Actor, now: datetime) -> list[DomainEvent]:
    _require(actor, MANAGERS, "a manager opens a period")
    if state is not None:
        raise Conflict(f"period {command.period_id} exists", code="already_exists")
    if not PERIOD_ID.match(command.period_id):
        raise InvalidInput("a period id is its year, a dash and a slug of a-z, 0-9 and -, e.g. 2026-11 or 2026-q4", field="period_id")
    if command.cadence not in CADENCES:
        raise InvalidInput("cadence is 'monthly' or 'quarterly'", field="cadence")
    starts = command.starts_on
    if starts.day != 1 or (command.cadence == "quarterly" and starts.month % 3 != 1):
        what = "month" if command.cadence == "monthly" else "quarter (January, April, July, October)"
        raise InvalidInput(f"a {command.cadence} period starts on the first day of a {what}", field="starts_on")
    if isinstance(command.appeal_days, bool) or not 1 <= command.appeal_days <= 90:
        raise InvalidInput("appeal_days is a number of days from 1 to 90", field="appeal_days")
    try:
        ZoneInfo(command.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {command.time_zone!r}", field="time_zone") from None
    grades = GradeScale.from_spec(command.grades) if command.grades is not None else DEFAULT_GRADES
    incentives = IncentiveRules.from_spec(command.incentives) if command.incentives is not None else DEFAULT_INCENTIVES
    return [ev.PeriodOpened(period_id=command.period_id, organisation_id=actor.organisation,
                            cadence=command.cadence, starts_on=starts, ends_on=period_end(command.cadence, starts),
                            catalogue_version=command.catalogue_version, grades=grades.to_spec(),
                            incentives=incentives.to_spec(), appeal_days=command.appeal_days, time_zone=command.time_zone, at=now,
                            by=actor.id)]


def _awards(state: Period, now: datetime) -> list[DomainEvent]:
    events: list[DomainEvent] = []
    for subject in sorted(state.scorecards):
        card = state.scorecards[subject]
        rule = state.incentives.rule(card.grade)
        if card.grade == NOT_GRADED or rule is None:
            continue
        events.append(ev.IncentiveAwarded(period_id=state.period_id, subject=subject, grade=card.grade,
                                          bonus_coefficient=str(rule.bonus_coefficient), recognition=rule.recognition,
                                          at=now))
        if rule.improvement_plan:
            goals = [{"kpi_id": x.kpi_id, "score": str(x.score), "reach": str(state.incentives.goal_below)}
                     for x in card.lines if x.score is not None and x.score < state.incentives.goal_below]
            events.append(ev.ImprovementPlanAssigned(
                period_id=state.period_id, subject=subject, grade=card.grade, goals=goals, at=now,
                review_on=now.date() + timedelta(days=state.incentives.review_days)))
    return events


def _require(actor: Actor, roles: tuple[Role, ...], what: str) -> None:
    if not actor.has(*roles):
        raise Forbidden(what)


def _reason(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("a written reason is required", field="reason")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"a reason has at most {MAX_REASON} characters", field="reason")
    return reason.strip()


def _score(value: Any) -> Decimal:
    score = as_number(value, "score")
    if not 0 <= score <= 100:
        raise InvalidInput("a score lies between 0 and 100", field="score")
    return score


def _card(state: Period, subject: str) -> Scorecard:
    card = state.scorecards.get(subject)
    if card is None:
        raise NotFound(f"{subject} has no scorecard in period {state.period_id}", field="subject")
    return card
