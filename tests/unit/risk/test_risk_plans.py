"""Emergency plans: choosing the plan for a trigger, activation naming who is on call, steps completed once,
stand-down once, the post-incident review with tracked actions."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import reduce

import pytest

from opsat.common.domain import AlreadyExists, Conflict, InvalidInput, InvalidTransition
from opsat.risk.app.configuration import emergency_id_for, on_call
from opsat.risk.domain import commands as c
from opsat.risk.domain import plans, rotas
from opsat.risk.domain.plans import DEFAULT_PLANS, Plan

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
P1 = DEFAULT_PLANS["p1-major-incident"]


def fold(events):
    return reduce(plans.evolve, events, None)


def activated(on_call_people=None):
    people = on_call_people or {"on_call_engineer": "ann", "duty_manager": "max"}
    return plans.activate(None, c.ActivateEmergency("em1", P1, people, "P1 breach", team="network"), NOW, "system")


def test_the_most_specific_matching_plan_is_chosen():
    mail = Plan.from_spec("mail-p1", 1, {"title": "Mail down", "triggers": {"priorities": ["P1"],
                                                                            "services": ["mail"]},
                                         "steps": [{"step_id": "failover", "title": "Fail over", "role": "mail_admin"}],
                                         "resources": [{"kind": "backup_system", "name": "mx2", "contact": "ops"}]})
    book = [P1, mail]
    assert plans.choose(book, "breach", "P1", "network", "mail") is mail
    assert plans.choose(book, "incident", "P1", "network", "vpn") is P1
    assert plans.choose(book, "breach", "P2", "network", "vpn") is None
    assert mail.to_spec()["resources"] == [{"kind": "backup_system", "name": "mx2", "contact": "ops"}]


def test_activation_names_the_person_on_call_for_each_steps_role_at_that_instant():
    [defined] = rotas.define(None, c.DefineRota("net", "network", "on_call_engineer", "2026-11-16", ("ann", "bo")),
                             NOW, "lead")
    book = {"net": rotas.evolve(None, defined)}
    people = on_call(book, P1, "network", NOW)  # 11:00 in Shanghai on 25 November: bo's week
    assert people == {"on_call_engineer": "bo", "duty_manager": None}
    [event] = activated(people)
    assert [(s["step_id"], s["assignee"]) for s in event.steps] == [
        ("triage", "bo"), ("command", None), ("communicate", None), ("restore", "bo")]
    with pytest.raises(AlreadyExists):
        plans.activate(fold([event]), c.ActivateEmergency("em1", P1, people, "again"), NOW, "system")


def test_one_emergency_per_plan_and_request():
    assert emergency_id_for("p1-major-incident", "r1") == emergency_id_for("p1-major-incident", "r1")
    assert emergency_id_for("p1-major-incident", "r1") != emergency_id_for("p1-major-incident", "r2")


def test_a_step_is_completed_once_an_unknown_one_is_refused_and_stand_down_happens_once():
    events = activated()
    with pytest.raises(InvalidInput) as refused:
        plans.complete_step(fold(events), c.CompleteStep("em1", "dance"), NOW, "ann")
    assert refused.value.field == "step_id"
    events += plans.complete_step(fold(events), c.CompleteStep("em1", "triage", "bridge open"), NOW, "ann")
    with pytest.raises(Conflict) as refused:
        plans.complete_step(fold(events), c.CompleteStep("em1", "triage"), NOW, "ann")
    assert refused.value.field == "step_id"
    with pytest.raises(InvalidTransition):
        plans.record_review(fold(events), c.RecordReview("em1", ("too early",)), NOW, "rita")
    events += plans.stand_down(fold(events), c.StandDown("em1", "service restored"), NOW, "rita")
    with pytest.raises(Conflict):
        plans.stand_down(fold(events), c.StandDown("em1", "again"), NOW, "rita")
    with pytest.raises(InvalidTransition):
        plans.complete_step(fold(events), c.CompleteStep("em1", "restore"), NOW, "ann")


def test_the_review_records_findings_and_actions_that_are_tracked_until_done():
    events = activated()
    events += plans.stand_down(fold(events), c.StandDown("em1", "restored"), NOW, "rita")
    with pytest.raises(InvalidInput) as refused:
        plans.record_review(fold(events), c.RecordReview("em1", ("disk full",), ({"title": "x", "owner": "y",
                                                                                   "due_on": "soon"},)), NOW, "rita")
    assert refused.value.field == "actions"
    [review] = plans.record_review(fold(events), c.RecordReview(
        "em1", ("disk full", "no alert"), ({"title": "Add disk alert", "owner": "ann", "due_on": "2026-12-01"},)),
        NOW, "rita")
    events.append(review)
    assert review.actions == [{"action_id": "a1", "title": "Add disk alert", "owner": "ann", "due_on": "2026-12-01"}]
    events += plans.complete_action(fold(events), c.CompleteReviewAction("em1", "a1", "alert live"), NOW, "ann")
    with pytest.raises(Conflict):
        plans.complete_action(fold(events), c.CompleteReviewAction("em1", "a1"), NOW, "ann")
    with pytest.raises(InvalidInput) as refused:
        plans.complete_action(fold(events), c.CompleteReviewAction("em1", "a7"), NOW, "ann")
    assert refused.value.field == "action_id"


@pytest.mark.parametrize(("spec", "field"), [
    ({"steps": []}, "steps"), ({"steps": [{"step_id": "a", "title": "t", "role": "x"}] * 2}, "steps"),
    ({"triggers": {"priorities": ["P7"]}}, "triggers"), ({"resources": [{"kind": "magic", "name": "x"}]}, "resources"),
    ({"title": ""}, "title")])
def test_bad_plans_are_refused_naming_the_field(spec, field):
    base = {"title": "t", "steps": [{"step_id": "a", "title": "t", "role": "x"}]}
    with pytest.raises(InvalidInput) as refused:
        Plan.from_spec("p", 1, {**base, **spec})
    assert refused.value.field == field
