"""An appraisal period's life: open, calculate, adjust, publish, appeal, close with incentives. Pure, no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from opsat.appraisal.domain import commands as c
from opsat.appraisal.domain import events as ev
from opsat.appraisal.domain.facts import Fact, Totals
from opsat.appraisal.domain.kpis import DEFAULT_CATALOGUE
from opsat.appraisal.domain.periods import decide, evolve, period_end
from opsat.appraisal.domain.scorecards import calculate
from opsat.common.domain import Actor, Conflict, Forbidden, InvalidInput, InvalidTransition, NotFound, Role

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
MANAGER = Actor("maria", "ops", frozenset({Role.manager}))
OTHER_MANAGER = Actor("mo", "ops", frozenset({Role.manager}))
ALICE = Actor("alice", "ops", frozenset({Role.agent}))
BOB = Actor("bob", "ops", frozenset({Role.agent}))
AUDITOR = Actor("audrey", "ops", frozenset({Role.auditor}))


def card(subject, on_time, complaints=0):
    facts = [Fact(subject, date(2026, 11, 3), n, Decimal(a), f"{subject}-{n}") for n, a in (
        ("resolution_measured", 10), ("resolved_on_time", on_time), ("response_measured", 10),
        ("responded_on_time", on_time), ("resolved", 10), ("first_time_resolved", 10), ("complaints", complaints))]
    return calculate(subject, Totals.of(facts), DEFAULT_CATALOGUE)


class Story:
    def __init__(self):
        self.state, self.events = None, []

    def do(self, command, actor=MANAGER, at=T0):
        new = decide(self.state, command, actor, at)
        for event in new:
            self.state = evolve(self.state, event)
        self.events += new
        return new


def opened(**kw):
    story = Story()
    story.do(c.OpenPeriod(period_id="2026-11", cadence="monthly",
                          starts_on=date(2026, 11, 1), catalogue_version=1, **kw))
    return story


def published():
    story = opened()
    story.do(c.CalculatePeriod("2026-11", (card("alice", 10), card("bob", 9, complaints=3))))
    story.do(c.PublishPeriod("2026-11"))
    return story


def test_period_ends_on_the_last_day_of_its_month_or_quarter():
    assert period_end("monthly", date(2026, 2, 1)) == date(2026, 2, 28)
    assert period_end("monthly", date(2026, 12, 1)) == date(2026, 12, 31)
    assert period_end("quarterly", date(2026, 10, 1)) == date(2026, 12, 31)


@pytest.mark.parametrize(("kw", "field"), [
    ({"cadence": "weekly"}, "cadence"), ({"starts_on": date(2026, 11, 2)}, "starts_on"),
    ({"cadence": "quarterly", "starts_on": date(2026, 11, 1)}, "starts_on"), ({"period_id": "Nov 2026"}, "period_id"),
    ({"appeal_days": 0}, "appeal_days"), ({"incentives": {"rules": []}}, "incentives.rules"),
])
def test_opening_refuses_bad_periods(kw, field):
    base = {"period_id": "2026-11", "cadence": "monthly", "starts_on": date(2026, 11, 1),
            "catalogue_version": 1}
    with pytest.raises(InvalidInput) as caught:
        decide(None, c.OpenPeriod(**{**base, **kw}), MANAGER, T0)
    assert caught.value.field == field


def test_only_managers_run_a_period():
    with pytest.raises(Forbidden):
        decide(None, c.OpenPeriod("2026-11", "monthly", date(2026, 11, 1), 1), ALICE, T0)
    story = opened()
    for actor in (ALICE, AUDITOR):
        with pytest.raises(Forbidden):
            story.do(c.CalculatePeriod("2026-11", (card("alice", 10),)), actor=actor)


def test_recalculation_replaces_cards_until_publication_then_never():
    story = opened()
    story.do(c.CalculatePeriod("2026-11", (card("alice", 8),)))
    story.do(c.CalculatePeriod("2026-11", (card("alice", 10),)))
    assert story.state.scorecards["alice"] == card("alice", 10)
    story.do(c.PublishPeriod("2026-11"))
    with pytest.raises(InvalidTransition) as caught:
        story.do(c.CalculatePeriod("2026-11", (card("alice", 9),)))
    assert caught.value.code == "already_published"
    with pytest.raises(InvalidTransition) as caught:
        story.do(c.PublishPeriod("2026-11"))
    assert caught.value.code == "already_published"


def test_adjustment_needs_a_reason_and_keeps_the_calculated_score():
    story = opened()
    story.do(c.CalculatePeriod("2026-11", (card("bob", 9, complaints=3),)))
    with pytest.raises(InvalidInput) as caught:
        story.do(c.AdjustScore("2026-11", "bob", "complaints", 50, "  "))
    assert caught.value.field == "reason"
    with pytest.raises(InvalidInput) as caught:
        story.do(c.AdjustScore("2026-11", "bob", "complaints", 101, "too high"))
    assert caught.value.field == "score"
    before = story.state.scorecards["bob"]
    [adjusted] = story.do(c.AdjustScore("2026-11", "bob", "complaints", 50, "two complaints were one incident"))
    assert adjusted.original_score == "0.00" and adjusted.score == "50.00"
    line = story.state.scorecards["bob"].line("complaints")
    assert line.score == Decimal("50.00") and line.adjusted_from == Decimal("0.00")
    # no survey answered: complaints weigh 10/75 of the total, so +50 points add 6.67
    assert (before.total, story.state.scorecards["bob"].total) == (Decimal("76.00"), Decimal("82.67"))


def test_appeals_within_the_window_by_the_engineer_reviewed_by_someone_else():
    story = published()
    with pytest.raises(Forbidden):
        story.do(c.FileAppeal("2026-11", "alice", "complaints", "not mine", appeal_id="a0"), actor=BOB)
    [filed] = story.do(c.FileAppeal("2026-11", "bob", "complaints", "one was a duplicate", appeal_id="a1"), actor=BOB)
    with pytest.raises(Conflict):
        story.do(c.FileAppeal("2026-11", "bob", "complaints", "again", appeal_id="a2"), actor=BOB)
    with pytest.raises(Forbidden):  # the one who filed does not judge
        story.do(c.ReviewAppeal("2026-11", "a1", "upheld", "fine"), actor=BOB)
    with pytest.raises(InvalidInput) as caught:
        story.do(c.ReviewAppeal("2026-11", "a1", "amended", "duplicate complaint"), actor=OTHER_MANAGER)
    assert caught.value.field == "score"
    grade_before = story.state.scorecards["bob"].grade
    [amended] = story.do(c.ReviewAppeal("2026-11", "a1", "amended", "duplicate complaint", score=100),
                         actor=OTHER_MANAGER)
    bob = story.state.scorecards["bob"]
    assert amended.original_score == "0.00" and bob.line("complaints").score == 100
    assert bob.total > Decimal(0) and (bob.grade, grade_before) == ("B", "C")
    with pytest.raises(InvalidTransition):
        story.do(c.ReviewAppeal("2026-11", "a1", "upheld", "changed my mind"), actor=OTHER_MANAGER)


def test_appeal_outside_the_window_or_before_publication_is_refused():
    story = opened()
    story.do(c.CalculatePeriod("2026-11", (card("bob", 9),)))
    with pytest.raises(InvalidTransition):
        story.do(c.FileAppeal("2026-11", "bob", "sla_resolution", "early", appeal_id="a1"), actor=BOB)
    story.do(c.PublishPeriod("2026-11"))
    late = T0 + timedelta(days=7, seconds=1)
    with pytest.raises(Conflict) as caught:
        story.do(c.FileAppeal("2026-11", "bob", "sla_resolution", "late", appeal_id="a1"), actor=BOB, at=late)
    assert caught.value.code == "appeal_window_closed"


def test_close_after_the_window_awards_incentives_and_plans_for_d_grades():
    story = published()
    story.do(c.FileAppeal("2026-11", "bob", "sla_resolution", "a clock ran on a holiday", appeal_id="a1"), actor=BOB)
    after = T0 + timedelta(days=8)
    with pytest.raises(Conflict) as caught:
        story.do(c.ClosePeriod("2026-11"), at=T0 + timedelta(days=1))
    assert caught.value.code == "appeal_window_open"
    with pytest.raises(Conflict) as caught:
        story.do(c.ClosePeriod("2026-11"), at=after)
    assert caught.value.code == "appeals_open"
    story.do(c.ReviewAppeal("2026-11", "a1", "upheld", "the holiday was worked"), actor=OTHER_MANAGER, at=after)
    closing = story.do(c.ClosePeriod("2026-11"), at=after)
    awards = {e.subject: e for e in closing if isinstance(e, ev.IncentiveAwarded)}
    assert story.state.scorecards["alice"].grade == "A" and awards["alice"].bonus_coefficient == "1.2"
    bob = story.state.scorecards["bob"]
    assert bob.grade == "C" and awards["bob"].bonus_coefficient == "0.8"
    assert not [e for e in closing if isinstance(e, ev.ImprovementPlanAssigned)]


def test_a_d_grade_gets_an_improvement_plan_with_goals_for_weak_kpis():
    story = opened()
    story.do(c.CalculatePeriod("2026-11", (card("eve", 5, complaints=4),)))
    story.do(c.PublishPeriod("2026-11"))
    closing = story.do(c.ClosePeriod("2026-11"), at=T0 + timedelta(days=8))
    [plan] = [e for e in closing if isinstance(e, ev.ImprovementPlanAssigned)]
    assert plan.grade == "D" and plan.review_on == date(2026, 12, 9) + timedelta(days=30)
    assert {g["kpi_id"] for g in plan.goals} == {"sla_resolution", "sla_response", "complaints"}


def test_commands_on_a_missing_period_are_not_found():
    with pytest.raises(NotFound):
        decide(None, c.PublishPeriod("2026-10"), MANAGER, T0)


def test_events_rebuild_the_same_period():
    story = published()
    replayed = None
    for event in story.events:
        replayed = evolve(replayed, type(event).model_validate(event.model_dump()))
    assert replayed == story.state
