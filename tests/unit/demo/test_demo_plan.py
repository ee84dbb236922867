"""The demo month's plan and mail reading, without any service: the same arguments give the same month, the month
has every kind, priority and ending, and the survey links are read from the emails feedback really renders."""

from __future__ import annotations

from datetime import UTC, datetime

from opsat.feedback.domain.mail import SurveyMail, answer_link, render
from tools.demo_month import KINDS, TARGETS, ListSource, invitations, make_plan


def test_the_same_seed_and_size_give_the_same_month_and_another_seed_another():
    assert make_plan(300, 5) == make_plan(300, 5)
    assert make_plan(300, 5).requests != make_plan(300, 6).requests


def test_a_month_has_every_kind_priority_and_ending_and_one_team_is_late_most():
    plan = make_plan(3000, 1)
    assert {p.kind for p in plan.requests} == set(KINDS)
    assert {p.priority for p in plan.requests} == set(TARGETS)
    assert {p.fate for p in plan.requests} == {"closed", "reopened", "resolved", "in_progress", "submitted",
                                               "rejected", "cancelled"}
    late = {team: sum(1 for p in plan.requests if p.team == team and p.late) /
            sum(1 for p in plan.requests if p.team == team) for team in ("network", "database")}
    assert late["database"] > 2 * late["network"]
    assert all(p.late is None for p in plan.requests if p.fate in ("submitted", "rejected", "cancelled"))
    assert len({p.organisation for p in plan.requests}) == 5 and len(plan.requesters) == 250


def test_even_a_small_month_has_three_late_resolutions_of_one_team():
    first = make_plan(5, 3).requests[:3]
    assert {(p.team, p.late, p.fate) for p in first} == {("database", "resolution", "closed")}


def test_pace_scales_the_targets():
    assert make_plan(10, 1, pace=0.5).targets("P2") == (TARGETS["P2"][0] / 2, TARGETS["P2"][1] / 2)


def test_invitations_are_read_from_the_emails_feedback_renders_and_others_are_ignored():
    def mail(request_id: str | None, token: str, purpose: str = "invitation", language: str = "en"):  # type: ignore[no-untyped-def]
        survey = SurveyMail(purpose=purpose, language=language, recipient="a@acme.example", sender="desk@ops.example",
                            request_id=request_id, expires_at=datetime(2026, 12, 1, tzinfo=UTC))
        return render(survey, answer_link("http://x/survey", token), "<m@x>")

    wanted, other = "0b2f6a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "11111111-2222-4333-8444-555555555555"
    source = ListSource([mail(wanted, "tok-1_A"), mail(wanted, "tok-1_A", "reminder", "zh"),
                         mail(other, "tok-2"), mail(None, "tok-campaign")])
    assert invitations(source, {wanted}) == {wanted: "tok-1_A"}
