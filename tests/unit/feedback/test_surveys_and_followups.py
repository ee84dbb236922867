"""The survey's life (issue, answer once, 409/410/404 rules, reminder, expiry) and the follow-up state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import reduce

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opsat.common.domain import AlreadyExists, Conflict, Gone, InvalidInput, InvalidTransition, NotDueYet, NotFound
from opsat.feedback.domain import commands as c
from opsat.feedback.domain import followups, surveys, tokens
from opsat.feedback.domain.templates import DEFAULT_TEMPLATE

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


def fold(evolve, events):
    return reduce(evolve, events, None)

KEY = b"k" * 32
TOKEN = tokens.token_for(KEY, "svy-1")
RATINGS = {"response_speed": 5, "professionalism": 5, "attitude": 4, "resolution": 5}


def issued() -> list:
    return surveys.decide(None, c.IssueSurvey(
        survey_id="svy-1", organisation_id="acme", request_id="r1", requester_id="alice",
        template=DEFAULT_TEMPLATE.to_spec(), token_hash=tokens.token_hash(TOKEN), language="zh",
        recipient="alice@acme.example", validity=timedelta(days=7), reminder_after=timedelta(days=3)), T0)


def answer(state, at, token=TOKEN, **changes):
    values = dict(survey_id="svy-1", token_hash=tokens.token_hash(token), template_version=1, ratings=RATINGS,
                  nps=9)
    return surveys.decide(state, c.AnswerSurvey(**{**values, **changes}), at)


def test_a_token_has_at_least_128_bits_and_only_its_hash_is_in_the_event():
    assert len(TOKEN) >= 22 and tokens.token_for(KEY, "svy-2") != TOKEN  # 32 bytes -> 43 base64 characters
    event = issued()[0]
    assert TOKEN not in event.model_dump_json() and event.token_hash == tokens.token_hash(TOKEN)
    assert event.remind_at == T0 + timedelta(days=3) and event.expires_at == T0 + timedelta(days=7)


def test_an_answer_is_taken_once_then_409():
    state = fold(surveys.evolve, issued())
    [answered] = answer(state, T0 + timedelta(hours=1))
    assert answered.score == 96.0 and answered.band == "very_satisfied" and answered.follow_up_reasons == []
    with pytest.raises(Conflict):
        answer(surveys.evolve(state, answered), T0 + timedelta(hours=2))


def test_a_wrong_token_is_told_exactly_what_an_unknown_survey_is_told():
    state = fold(surveys.evolve, issued())
    with pytest.raises(NotFound) as wrong:
        answer(state, T0, token=tokens.token_for(b"x" * 32, "svy-1"))
    with pytest.raises(NotFound) as unknown:
        answer(None, T0)
    assert (wrong.value.detail, wrong.value.field) == (unknown.value.detail, unknown.value.field)


def test_an_expired_link_is_gone_even_before_its_deadline_fired():
    state = fold(surveys.evolve, issued())
    with pytest.raises(Gone):
        answer(state, T0 + timedelta(days=7))
    expired = surveys.decide(state, c.ExpireSurvey("svy-1"), T0 + timedelta(days=7))
    with pytest.raises(Gone):
        answer(fold(surveys.evolve, [*issued(), *expired]), T0 + timedelta(days=1))


def test_an_answer_for_another_template_version_names_the_field():
    with pytest.raises(InvalidInput) as error:
        answer(fold(surveys.evolve, issued()), T0, template_version=2)
    assert error.value.field == "template_version"


def test_one_reminder_after_three_days_and_none_after_an_answer():
    state = fold(surveys.evolve, issued())
    with pytest.raises(NotDueYet) as early:
        surveys.decide(state, c.RemindSurvey("svy-1"), T0 + timedelta(days=2))
    assert early.value.due_at == T0 + timedelta(days=3)
    reminded = surveys.decide(state, c.RemindSurvey("svy-1"), T0 + timedelta(days=3))
    with pytest.raises(Conflict):
        surveys.decide(fold(surveys.evolve, [*issued(), *reminded]), c.RemindSurvey("svy-1"), T0 + timedelta(days=4))
    answered = fold(surveys.evolve, [*issued(), *answer(state, T0)])
    with pytest.raises(Conflict):
        surveys.decide(answered, c.RemindSurvey("svy-1"), T0 + timedelta(days=3))
    with pytest.raises(Conflict):
        surveys.decide(answered, c.ExpireSurvey("svy-1"), T0 + timedelta(days=8))


def test_a_survey_is_issued_once():
    with pytest.raises(AlreadyExists):
        surveys.decide(fold(surveys.evolve, issued()), issued_command(), T0)


def issued_command():
    return c.IssueSurvey(survey_id="svy-1", organisation_id="acme", request_id="r1", requester_id="alice",
                         template=DEFAULT_TEMPLATE.to_spec(), token_hash="h", language="en", recipient=None,
                         validity=timedelta(days=7), reminder_after=timedelta(days=3))


# --- follow-ups ------------------------------------------------------------------------------------------
def follow(state, command, at=T0):
    return followups.decide(state, command, at, "lead-1", default_owner="service-desk", due_after=timedelta(days=2))


OPEN = c.OpenFollowUp(followup_id="fu-1", organisation_id="acme", source="survey", reasons=("low_score",),
                      survey_id="svy-1")


def test_a_follow_up_goes_open_contacted_resolved_confirmed():
    history = follow(None, OPEN)
    assert history[0].owner == "service-desk" and history[0].due_at == T0 + timedelta(days=2)
    for command in (c.RecordContact("fu-1", "called"), c.ResolveFollowUp("fu-1", "re-trained"),
                    c.RecordCustomerReaction("fu-1", accepted=True)):
        history += follow(fold(followups.evolve, history), command)
    assert fold(followups.evolve, history).status == "customer_confirmed"


def test_a_rejected_resolution_opens_it_again_and_needs_a_comment():
    history = follow(None, OPEN)
    for command in (c.RecordContact("fu-1", "called"), c.ResolveFollowUp("fu-1", "fixed")):
        history += follow(fold(followups.evolve, history), command)
    with pytest.raises(InvalidInput) as error:
        follow(fold(followups.evolve, history), c.RecordCustomerReaction("fu-1", accepted=False))
    assert error.value.field == "comment"
    history += follow(fold(followups.evolve, history), c.RecordCustomerReaction("fu-1", False, "still broken"))
    assert fold(followups.evolve, history).status == "open"


STEPS = [c.RecordContact("fu-1", "called"), c.ResolveFollowUp("fu-1", "fixed"),
         c.RecordCustomerReaction("fu-1", True), c.RecordCustomerReaction("fu-1", False, "no")]


@given(st.lists(st.sampled_from(STEPS), max_size=12))
def test_confirmed_is_reached_only_through_resolved_and_a_customer_acceptance(steps):
    history = follow(None, OPEN)
    for step in steps:
        state = fold(followups.evolve, history)
        try:
            events = follow(state, step)
        except InvalidTransition:
            assert state.status not in followups.ALLOWED_FROM[type(step)]
            continue
        if isinstance(step, c.RecordCustomerReaction):
            assert state.status == "resolved"
        history += events
    final = fold(followups.evolve, history)
    assert final.status in followups.STATUSES
    if final.status == "customer_confirmed":
        assert history[-1].event_type.endswith("customer_reacted") and history[-1].accepted


def test_overdue_is_flagged_once_and_not_when_resolved():
    state = fold(followups.evolve, follow(None, OPEN))
    with pytest.raises(NotDueYet):
        follow(state, c.MarkFollowUpOverdue("fu-1"), T0 + timedelta(days=1))
    overdue = follow(state, c.MarkFollowUpOverdue("fu-1"), T0 + timedelta(days=2))
    with pytest.raises(InvalidTransition):
        follow(followups.evolve(state, overdue[0]), c.MarkFollowUpOverdue("fu-1"), T0 + timedelta(days=3))


def test_a_follow_up_reopened_by_a_rejected_resolution_is_due_anew_and_flagged_overdue_again():
    history = follow(None, OPEN)  # due T0 + 2 d
    history += follow(fold(followups.evolve, history), c.MarkFollowUpOverdue("fu-1"), T0 + timedelta(days=2))
    for at, command in ((3, c.RecordContact("fu-1", "called")), (4, c.ResolveFollowUp("fu-1", "fixed")),
                        (5, c.RecordCustomerReaction("fu-1", False, "still broken"))):
        history += follow(fold(followups.evolve, history), command, T0 + timedelta(days=at))
    assert history[-1].due_at == T0 + timedelta(days=7)  # the rejection's time + the follow-up's due delay
    reopened = fold(followups.evolve, history)
    assert (reopened.status, reopened.overdue, reopened.due_at) == ("open", False, T0 + timedelta(days=7))
    with pytest.raises(NotDueYet) as early:
        follow(reopened, c.MarkFollowUpOverdue("fu-1"), T0 + timedelta(days=6))
    assert early.value.due_at == T0 + timedelta(days=7)
    [again] = follow(reopened, c.MarkFollowUpOverdue("fu-1"), T0 + timedelta(days=7))
    assert again.due_at == T0 + timedelta(days=7)
    accepted = follow(None, OPEN)
    for command in (c.RecordContact("fu-1", "called"), c.ResolveFollowUp("fu-1", "fixed"),
                    c.RecordCustomerReaction("fu-1", True)):
        accepted += follow(fold(followups.evolve, accepted), command)
    assert accepted[-1].due_at is None  # confirmed: nothing is due any more


def test_a_complaint_needs_its_text_and_known_reasons():
    with pytest.raises(InvalidInput) as error:
        follow(None, c.OpenFollowUp("fu-2", "acme", "complaint", ("complaint",), complaint=" "))
    assert error.value.field == "complaint"
    with pytest.raises(InvalidInput) as error:
        follow(None, c.OpenFollowUp("fu-2", "acme", "complaint", ("angry",), complaint="rude"))
    assert error.value.field == "reasons"
