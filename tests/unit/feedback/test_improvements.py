"""Improvement actions (PDCA): the life cycle propose -> approve -> implement -> verify -> close or replan, who may
approve, bad input naming its field, and the check's figures and verdict as pure functions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import reduce

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opsat.common.domain import Forbidden, InvalidInput, InvalidTransition, NotDueYet
from opsat.feedback.domain import commands as c
from opsat.feedback.domain import improvements as imp

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
PROPOSAL = c.ProposeImprovement(improvement_id="imp-1", organisation_id="ops", title="Call back within a day",
                                plan="A daily call-back rota for low scores", followup_ids=("fu-1",), team="network",
                                window_days=10, min_responses=2, known_followups=("fu-1",))


def fold(events):
    return reduce(imp.evolve, events, None)


def step(history, command, at=T0, by="lead-1"):
    return history + imp.decide(fold(history), command, at, by, check_grace=timedelta(hours=1))


def verified(before, after, min_responses=2):
    history = step([], replace(PROPOSAL, min_responses=min_responses))
    history = step(history, c.ApproveImprovement("imp-1"), by="boss")
    history = step(history, c.RecordImplementation("imp-1", T0 - timedelta(days=1), "rota set up"))
    return step(history, c.VerifyImprovement("imp-1", imp.figures(before), imp.figures(after)),
                at=T0 + timedelta(days=9))


def test_the_cycle_proposed_approved_implemented_verified_closed():
    history = step([], PROPOSAL)
    assert fold(history).status == "proposed" and fold(history).scope == {"team": "network"}
    history = step(history, c.ApproveImprovement("imp-1", note="go"), by="boss")
    history = step(history, c.RecordImplementation("imp-1", T0 - timedelta(days=2), "rota set up"))
    implemented = history[-1]
    assert implemented.verify_due_at == T0 - timedelta(days=2) + timedelta(days=10, hours=1)  # window end + grace
    with pytest.raises(NotDueYet) as early:
        step(history, c.VerifyImprovement("imp-1", imp.figures([]), imp.figures([])), at=T0 + timedelta(days=7))
    assert early.value.due_at == T0 + timedelta(days=8)  # the window after has not ended
    history = step(history, c.VerifyImprovement("imp-1", imp.figures([40, 50]), imp.figures([80, 90])),
                   at=T0 + timedelta(days=8))
    check = history[-1]
    assert (check.verdict, check.before_from, check.after_until) == (
        "improved", T0 - timedelta(days=12), T0 + timedelta(days=8))
    assert (check.before.csat_mean, check.after.csat_mean, check.after.satisfied_percent) == (45.0, 85.0, 100.0)
    history = step(history, c.CloseImprovement("imp-1"))
    assert fold(history).status == "closed"


def test_nobody_approves_their_own_proposal_and_only_a_proposal_is_approved():
    history = step([], PROPOSAL, by="boss")
    with pytest.raises(Forbidden):
        step(history, c.ApproveImprovement("imp-1"), by="boss")
    history = step(history, c.ApproveImprovement("imp-1"), by="other-manager")
    with pytest.raises(InvalidTransition):
        step(history, c.ApproveImprovement("imp-1"), by="third-manager")


def test_a_check_that_did_not_help_needs_a_note_to_close_or_goes_back_to_plan_for_approval_again():
    history = verified([80, 90], [50, 60])
    assert history[-1].verdict == "not_improved"
    with pytest.raises(InvalidInput) as no_note:
        step(history, c.CloseImprovement("imp-1"))
    assert no_note.value.field == "note"
    replanned = step(history, c.ReplanImprovement("imp-1", reason="rota ignored", plan="a rota with a dashboard"))
    state = fold(replanned)
    assert (state.status, state.cycle, state.plan, state.implemented_at, state.verdict) == (
        "proposed", 2, "a rota with a dashboard", None, None)
    with pytest.raises(InvalidTransition):  # the new cycle is approved before it is implemented
        step(replanned, c.RecordImplementation("imp-1", T0, "dashboard"))


@pytest.mark.parametrize(("changes", "field"), [
    ({"title": " "}, "title"),
    ({"plan": ""}, "plan"),
    ({"team": None}, "team"),  # no scope at all
    ({"followup_ids": (), "known_followups": ()}, "followup_ids"),  # neither follow-ups nor a trend
    ({"followup_ids": ("fu-1", "fu-404")}, "followup_ids.1"),
    ({"window_days": 0}, "window_days"),
    ({"window_days": 366}, "window_days"),
    ({"min_responses": 0}, "min_responses"),
    ({"trend": "x" * 4001}, "trend"),
])
def test_a_bad_proposal_names_its_field(changes, field):
    with pytest.raises(InvalidInput) as refused:
        imp.decide(None, replace(PROPOSAL, **changes), T0, "lead-1")
    assert refused.value.field == field


def test_a_trend_alone_is_a_reason_and_the_owner_defaults_to_the_proposer():
    proposed = imp.decide(None, replace(PROPOSAL, followup_ids=(), trend="CSAT of kind change fell 8 points",
                                        team=None, kind="change"), T0, "lead-1")[0]
    assert (proposed.owner, proposed.kind, proposed.followup_ids) == ("lead-1", "change", [])


@pytest.mark.parametrize(("at", "field"), [
    (T0 + timedelta(minutes=1), "implemented_at"),  # ahead of now
    (T0 - timedelta(days=366), "implemented_at"),
    (datetime(2026, 11, 1, 9), "implemented_at"),  # no offset
])
def test_an_implementation_time_in_the_future_too_old_or_naive_is_refused(at, field):
    history = step(step([], PROPOSAL), c.ApproveImprovement("imp-1"), by="boss")
    with pytest.raises(InvalidInput) as refused:
        step(history, c.RecordImplementation("imp-1", at, "done"))
    assert refused.value.field == field
    with pytest.raises(InvalidInput) as empty:
        step(history, c.RecordImplementation("imp-1", T0, "  "))
    assert empty.value.field == "description"


def test_figures_of_a_window():
    assert imp.figures([]) == imp.Figures(0, None, None)
    assert imp.figures([74.99, 75.0, 100.0]) == imp.Figures(3, 83.33, 66.67)


def test_too_few_responses_in_either_window_is_insufficient_data():
    assert imp.verdict(imp.figures([50, 60]), imp.figures([95]), 2) == "insufficient_data"
    assert imp.verdict(imp.figures([50]), imp.figures([95, 95]), 2) == "insufficient_data"
    assert imp.verdict(imp.figures([50, 60]), imp.figures([95, 95]), 2) == "improved"


def test_a_higher_mean_with_a_smaller_share_satisfied_is_not_an_improvement():
    before, after = imp.figures([76, 76, 20]), imp.figures([100, 60, 60])  # mean 57.33 -> 73.33, satisfied 67 -> 33
    assert after.csat_mean > before.csat_mean and after.satisfied_percent < before.satisfied_percent
    assert imp.verdict(before, after, 1) == "not_improved"


SCORES = st.lists(st.decimals(min_value=20, max_value=100, places=2).map(float), max_size=40)


@given(SCORES, SCORES, st.integers(1, 5))
def test_the_verdict_depends_only_on_the_scores_not_their_order(before, after, minimum):
    first = imp.verdict(imp.figures(before), imp.figures(after), minimum)
    assert first == imp.verdict(imp.figures(list(reversed(before))), imp.figures(sorted(after)), minimum)
    assert first in imp.VERDICTS


@given(SCORES, SCORES)
def test_improvement_is_never_both_ways(before, after):
    forth = imp.verdict(imp.figures(before), imp.figures(after), 1)
    back = imp.verdict(imp.figures(after), imp.figures(before), 1)
    assert not (forth == back == "improved")
    if forth == "insufficient_data":
        assert back == "insufficient_data" and (not before or not after)


@given(st.lists(st.decimals(min_value=20, max_value=100, places=2).map(float), min_size=1, max_size=40))
def test_the_mean_lies_within_the_scores_and_the_share_within_0_and_100(scores):
    window = imp.figures(scores)
    assert window.responses == len(scores)
    assert min(scores) - 0.005 <= window.csat_mean <= max(scores) + 0.005
    assert 0 <= window.satisfied_percent <= 100


def test_the_improvement_board_is_given_every_improvement_event_and_nothing_else() -> None:
    """It names what it handles so that the runner skips the topic's survey traffic without a transaction; an
    improvement event added later must be named there too, or the board would never see it."""
    from opsat.feedback.domain import events as ev
    from opsat.feedback.projections.improvements import ImprovementBoardProjection

    assert set(ImprovementBoardProjection.handles) == set(ev.ImprovementEvent.__subclasses__())
