"""The register's pure rules: 5×5 scoring and levels, the life cycle, reassessments kept, signals that raise
or re-score a risk and never duplicate one."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import reduce

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opsat.common.domain import Conflict, InvalidInput, InvalidTransition
from opsat.risk.domain import commands as c
from opsat.risk.domain import events as ev
from opsat.risk.domain import register
from opsat.risk.domain.register import Levels
from opsat.risk.domain.signals import Signal

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
LEVELS = Levels()


def fold(events):
    return reduce(register.evolve, events, None)


def identify(**overrides):
    fields = dict(risk_id="r1", title="Mail cluster near capacity", category="capacity", description="disks 85 %",
                  subject_type="service", subject="mail", owner="olga", likelihood=None, impact=None)
    return register.identify(c.IdentifyRisk(**{**fields, **overrides}), LEVELS, NOW, "olga")


@pytest.mark.parametrize(("score", "level"), [(1, "low"), (4, "low"), (5, "medium"), (9, "medium"), (10, "high"),
                                              (16, "high"), (17, "critical"), (25, "critical")])
def test_domain_md_levels(score, level):
    assert LEVELS.level(score) == level


def test_level_thresholds_are_configuration():
    strict = Levels.from_mapping({"medium": 3, "high": 6, "critical": 12})
    assert strict.level(12) == "critical" and LEVELS.level(12) == "high"
    with pytest.raises(ValueError):
        Levels.from_mapping({"medium": 10, "high": 5, "critical": 17})


@given(st.integers(1, 5), st.integers(1, 5))
def test_score_is_likelihood_times_impact(likelihood, impact):
    [_, assessed] = identify(likelihood=likelihood, impact=impact)
    assert assessed.score == likelihood * impact and assessed.level == LEVELS.level(likelihood * impact)
    assert assessed.status == "assessed"


@pytest.mark.parametrize(("field", "value"), [("likelihood", 0), ("likelihood", 6), ("impact", -1), ("impact", 9),
                                              ("impact", True)])
def test_likelihood_and_impact_outside_1_to_5_are_refused_naming_the_field(field, value):
    state = fold(identify(likelihood=3, impact=3))
    values = {"likelihood": 3, "impact": 3, field: value}
    with pytest.raises(InvalidInput) as refused:
        register.assess(state, c.AssessRisk(risk_id="r1", rationale="again", **values), LEVELS, NOW, "olga")
    assert refused.value.field == field
    with pytest.raises(InvalidInput) as refused:
        identify(**values)
    assert refused.value.field == field


def test_unknown_category_is_refused():
    with pytest.raises(InvalidInput) as refused:
        identify(category="weather")
    assert refused.value.field == "category"


def test_life_cycle_keeps_every_reassessment_and_ends_in_accepted_or_closed():
    events = identify()
    assert fold(events).status == "identified"
    events += register.assess(fold(events), c.AssessRisk("r1", 2, 3, "first look"), LEVELS, NOW, "olga")
    events += register.assess(fold(events), c.AssessRisk("r1", 4, 3, "growth faster"), LEVELS, NOW, "olga")
    events += register.plan_mitigation(fold(events), c.PlanMitigation("r1", "add a shelf", date(2026, 12, 31)),
                                       NOW.date(), NOW, "olga")
    events += register.progress(fold(events), c.RecordProgress("r1", 40, "ordered"), NOW, "olga")
    events += register.assess(fold(events), c.AssessRisk("r1", 2, 3, "shelf arrived"), LEVELS, NOW, "olga")
    risk = fold(events)
    assert (risk.status, risk.score, risk.level, risk.progress, risk.assessments) == ("mitigating", 6, "medium", 40, 3)
    assert [e.score for e in events if isinstance(e, ev.RiskAssessed)] == [6, 12, 6]
    accepted = events + register.accept(risk, c.AcceptRisk("r1", "residual is fine"), NOW, "rita")
    assert fold(accepted).status == "accepted" and not fold(accepted).open
    for step in (lambda s: register.close(s, c.CloseRisk("r1", "done"), NOW, "rita"),
                 lambda s: register.assess(s, c.AssessRisk("r1", 1, 1, "x"), LEVELS, NOW, "rita")):
        with pytest.raises(InvalidTransition):
            step(fold(accepted))


def test_mitigation_needs_an_assessment_and_a_due_date_not_in_the_past():
    with pytest.raises(InvalidTransition):
        register.plan_mitigation(fold(identify()), c.PlanMitigation("r1", "p", date(2027, 1, 1)), NOW.date(), NOW, "o")
    with pytest.raises(InvalidInput) as refused:
        register.plan_mitigation(fold(identify(likelihood=2, impact=2)),
                                 c.PlanMitigation("r1", "p", NOW.date() - timedelta(days=1)), NOW.date(), NOW, "o")
    assert refused.value.field == "due_on"


def signal(evidence, likelihood=3, subject="network"):
    return Signal(rule_id="sla-breaches-team", rule_version=1, subject_type="team", subject=subject,
                  category="service_quality", title="Repeated SLA breaches: team network", description="3 in 7 d",
                  likelihood=likelihood, impact=3, observed=float(len(evidence)), evidence=tuple(evidence))


def test_a_signal_raises_an_assessed_risk_then_re_scores_it_and_never_records_the_same_evidence_twice():
    raised = register.record_signal(None, c.RecordSignal("r9", signal(["e1", "e2", "e3"])), LEVELS, NOW, "system")
    assert [type(e) for e in raised] == [ev.RiskIdentified, ev.SignalRecorded, ev.RiskAssessed]
    risk = fold(raised)
    assert (risk.source, risk.status, risk.score, risk.evidence) == ("signal", "assessed", 9, ("e1", "e2", "e3"))
    rescored = register.record_signal(risk, c.RecordSignal("r9", signal(["e1", "e2", "e3", "e4"], likelihood=4)),
                                      LEVELS, NOW, "system")
    assert [type(e) for e in rescored] == [ev.SignalRecorded, ev.RiskAssessed]
    assert rescored[0].evidence == ["e4"]  # only what is new; the risk keeps the union
    risk = fold(raised + rescored)
    assert (risk.score, risk.level, risk.assessments) == (12, "high", 2)
    assert risk.evidence == ("e1", "e2", "e3", "e4")
    with pytest.raises(Conflict) as refused:
        register.record_signal(risk, c.RecordSignal("r9", signal(["e2", "e3", "e4"], likelihood=4)), LEVELS, NOW, "s")
    assert refused.value.field == "evidence"


def test_a_signal_never_reopens_a_closed_risk():
    events = register.record_signal(None, c.RecordSignal("r9", signal(["e1"])), LEVELS, NOW, "system")
    events += register.close(fold(events), c.CloseRisk("r9", "fixed"), NOW, "rita")
    with pytest.raises(Conflict):
        register.record_signal(fold(events), c.RecordSignal("r9", signal(["e1", "e2"])), LEVELS, NOW, "system")


def test_level_thresholds_in_settings_are_checked_when_the_service_starts():
    from opsat.risk.settings import RiskSettings

    assert RiskSettings(risk_levels={"medium": 4, "high": 9, "critical": 16}).risk_levels["high"] == 9
    for bad in ({"medium": 9, "high": 5, "critical": 17}, {"medium": 5, "high": 10}):
        with pytest.raises(ValueError):
            RiskSettings(risk_levels=bad)
