"""Answering rules (every dimension rated, NPS 0-10, comment required below the threshold, follow-up reasons)
and the sampling rule (never the same person twice within the window; an optional rate, fixed per event)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opsat.common.domain import InvalidInput
from opsat.feedback.domain import answers, sampling
from opsat.feedback.domain.templates import DEFAULT_TEMPLATE

ALL_FOUR = {"response_speed": 4, "professionalism": 4, "attitude": 4, "resolution": 4}
ALL_TWO = {k: 2 for k in ALL_FOUR}


def test_a_good_answer_opens_nothing():
    judged = answers.judge(DEFAULT_TEMPLATE, ALL_FOUR, 9, None)
    assert (judged.score, judged.band, judged.nps_category, judged.follow_up_reasons) == (
        80.0, "satisfied", "promoter", ())


def test_a_low_score_and_a_detractor_are_both_reasons_to_follow_up():
    judged = answers.judge(DEFAULT_TEMPLATE, ALL_TWO, 3, "took a week")
    assert judged.follow_up_reasons == ("low_score", "detractor")
    assert answers.judge(DEFAULT_TEMPLATE, ALL_FOUR, 6, None).follow_up_reasons == ("detractor",)


@pytest.mark.parametrize(("ratings", "nps", "comment", "field"), [
    ({k: v for k, v in ALL_FOUR.items() if k != "attitude"}, 9, None, "ratings.attitude"),  # nothing pre-selected
    ({**ALL_FOUR, "attitude": None}, 9, None, "ratings.attitude"),
    ({**ALL_FOUR, "attitude": 6}, 9, None, "ratings.attitude"),
    ({**ALL_FOUR, "attitude": 0}, 9, None, "ratings.attitude"),
    ({**ALL_FOUR, "attitude": True}, 9, None, "ratings.attitude"),
    ({**ALL_FOUR, "speed": 3}, 9, None, "ratings.speed"),
    (ALL_FOUR, None, None, "nps"),
    (ALL_FOUR, 11, None, "nps"),
    (ALL_FOUR, -1, None, "nps"),
    (ALL_FOUR, 9, "x" * 2001, "comment"),
    (ALL_TWO, 9, None, "comment"),  # below 60 needs a comment
    (ALL_TWO, 9, "   ", "comment"),
])
def test_bad_answers_name_the_field(ratings, nps, comment, field):
    with pytest.raises(InvalidInput) as error:
        answers.judge(DEFAULT_TEMPLATE, ratings, nps, comment)
    assert error.value.field == field


@given(st.fixed_dictionaries({k: st.integers(1, 5) for k in ALL_FOUR}), st.integers(0, 10))
def test_a_comment_is_needed_exactly_below_the_threshold(ratings, nps):
    score = answers.judge(DEFAULT_TEMPLATE, ratings, nps, "because").score
    try:
        answers.judge(DEFAULT_TEMPLATE, ratings, nps, None)
        needed = False
    except InvalidInput:
        needed = True
    assert needed == (score < DEFAULT_TEMPLATE.comment_required_below)


T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


def test_the_same_person_is_not_surveyed_again_within_seven_days():
    rule = sampling.SamplingRule()
    assert sampling.should_survey(rule, None, T0, "e1") == (True, "sampled")
    assert sampling.should_survey(rule, T0, T0 + timedelta(days=6, hours=23), "e2") == (False, "surveyed_recently")
    assert sampling.should_survey(rule, T0, T0 + timedelta(days=7), "e3") == (True, "sampled")


@given(st.lists(st.integers(0, 30 * 24 * 60), min_size=1, max_size=40), st.integers(1, 14))
def test_invitations_of_one_person_are_never_closer_than_the_window(closures_minutes, window_days):
    rule = sampling.SamplingRule(window=timedelta(days=window_days))
    last, invited = None, []
    for i, minute in enumerate(sorted(closures_minutes)):
        now = T0 + timedelta(minutes=minute)
        yes, _ = sampling.should_survey(rule, last, now, f"event-{i}")
        if yes:
            invited.append(now)
            last = now
    assert invited  # the first closure is always surveyed at rate 1
    assert all(b - a >= rule.window for a, b in zip(invited, invited[1:], strict=False))


def test_a_rate_samples_about_that_share_and_decides_the_same_on_replay():
    rule = sampling.SamplingRule(rate=0.25)
    decisions = [sampling.should_survey(rule, None, T0, f"event-{i}")[0] for i in range(4000)]
    assert 0.2 < sum(decisions) / len(decisions) < 0.3
    assert decisions == [sampling.should_survey(rule, None, T0, f"event-{i}")[0] for i in range(4000)]
    assert not any(sampling.should_survey(sampling.SamplingRule(rate=0.0), None, T0, f"e{i}")[0] for i in range(100))
