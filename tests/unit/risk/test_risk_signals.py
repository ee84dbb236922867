"""Signal rules: DOMAIN.md's defaults, validation (windows > 0), and when a rule fires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opsat.common.domain import InvalidInput
from opsat.risk.domain import commands as c
from opsat.risk.domain import signals
from opsat.risk.domain.signals import DEFAULT_RULES, Observation, SignalRule

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def breach(n: int, at: datetime, team: str | None = "network", priority: str = "P2", service: str | None = None):
    return Observation(event_id=f"e{n}", source="sla_breach", at=at, team=team, service=service, priority=priority)


def test_domain_md_defaults_ship_as_version_1():
    assert {r.rule_id: (r.source, r.subject, r.mode, r.threshold, r.window_seconds, r.last_n)
            for r in DEFAULT_RULES.values()} == {
        "sla-breaches-team": ("sla_breach", "team", "count", 3, 7 * 86400, None),
        "sla-breaches-service": ("sla_breach", "service", "count", 3, 7 * 86400, None),
        "csat-team": ("feedback_response", "team", "mean_below", 70, None, 20),
        "incidents-service": ("incident", "service", "count", 3, 86400, None),
        "p1-breach": ("sla_breach", "team", "count", 1, 7 * 86400, None)}
    assert DEFAULT_RULES["p1-breach"].priorities == {"P1"} and DEFAULT_RULES["incidents-service"].per_kind
    assert all(r.version == 1 for r in DEFAULT_RULES.values())


@given(st.integers(max_value=0))
def test_windows_of_zero_or_less_are_refused_naming_the_field(window):
    with pytest.raises(InvalidInput) as refused:
        SignalRule.from_spec("r", 1, {"source": "sla_breach", "subject": "team", "threshold": 3,
                                      "window_seconds": window})
    assert refused.value.field == "window_seconds"


@pytest.mark.parametrize(("spec", "field"), [
    ({"threshold": 0}, "threshold"), ({"source": "weather"}, "source"), ({"likelihood": 6}, "likelihood"),
    ({"mode": "mean_below", "last_n": 0}, "last_n"), ({"priorities": ["P9"]}, "priorities"),
    ({"subject": "person"}, "subject")])
def test_bad_rule_specs_are_refused_naming_the_field(spec, field):
    base = {"source": "sla_breach", "subject": "team", "threshold": 3, "window_seconds": 60}
    with pytest.raises(InvalidInput) as refused:
        SignalRule.from_spec("r", 1, {**base, **spec})
    assert refused.value.field == field


def test_a_new_version_replaces_a_default():
    command = c.DefineRule(rule_id="sla-breaches-team", source="sla_breach", subject="team", threshold=5,
                           window_seconds=3600)
    [defined] = signals.decide(None, command, T0, "rita")
    assert defined.version == 2 and signals.evolve(None, defined).threshold == 5


@given(st.lists(st.integers(0, 14 * 86400), min_size=1, max_size=12), st.integers(1, 5),
       st.integers(1, 10 * 86400))
def test_a_count_rule_fires_exactly_when_enough_observations_lie_in_the_window(offsets, threshold, window):
    rule = SignalRule.from_spec("r", 1, {"source": "sla_breach", "subject": "team", "threshold": threshold,
                                         "window_seconds": window})
    history = [breach(i, T0 + timedelta(seconds=s)) for i, s in enumerate(sorted(offsets))]
    latest = history[-1]
    inside = [o for o in history if latest.at - timedelta(seconds=window) < o.at <= latest.at]
    fired = rule.evaluate(latest, history)
    if len(inside) >= threshold:
        assert fired is not None and set(fired.evidence) == {o.event_id for o in inside}
        assert fired.likelihood == min(5, 3 + len(inside) - threshold)
    else:
        assert fired is None


def test_three_breaches_of_a_team_in_seven_days_fire_and_a_fourth_raises_the_likelihood():
    rule = DEFAULT_RULES["sla-breaches-team"]
    history = [breach(1, T0), breach(2, T0 + timedelta(days=1)), breach(9, T0 + timedelta(days=2), team="mail")]
    assert rule.evaluate(history[-1], history) is None
    history.append(breach(3, T0 + timedelta(days=6)))
    fired = rule.evaluate(history[-1], history)
    assert fired is not None and fired.evidence == ("e1", "e2", "e3") and fired.key == \
        "sla-breaches-team:team:network"
    assert (fired.likelihood, fired.impact) == (3, 3)
    history.append(breach(4, T0 + timedelta(days=6, hours=1)))
    fired = rule.evaluate(history[-1], history)
    assert fired is not None and fired.likelihood == 4 and len(fired.evidence) == 4
    late = breach(5, T0 + timedelta(days=8, hours=1))  # the first two fell out of the window
    assert rule.evaluate(late, [*history, late]).evidence == ("e3", "e4", "e5")


def test_a_breach_without_a_team_counts_for_no_team_rule_and_only_p1_counts_for_the_p1_rule():
    assert DEFAULT_RULES["sla-breaches-team"].subject_of(breach(1, T0, team=None)) is None
    assert DEFAULT_RULES["p1-breach"].evaluate(breach(1, T0), [breach(1, T0)]) is None
    fired = DEFAULT_RULES["p1-breach"].evaluate(breach(2, T0, priority="P1"), [breach(2, T0, priority="P1")])
    assert fired is not None and fired.impact == 5


def test_incidents_count_per_service_and_kind_within_24_hours():
    rule = DEFAULT_RULES["incidents-service"]

    def incident(n, hours, kind="incident", service="vpn"):
        return Observation(event_id=f"i{n}", source="incident", at=T0 + timedelta(hours=hours), service=service,
                           kind=kind)

    history = [incident(1, 0), incident(2, 5), incident(3, 10, kind="change"), incident(4, 30)]
    assert rule.evaluate(history[-1], history) is None  # the first fell out; the change is another kind
    history += [incident(5, 31), incident(6, 32, service="mail"), incident(7, 33)]
    fired = rule.evaluate(history[-1], history)
    assert fired is not None and fired.subject == "vpn/incident" and fired.evidence == ("i4", "i5", "i7")


def test_team_csat_below_70_over_the_last_20_responses():
    rule = DEFAULT_RULES["csat-team"]

    def response(n, score):
        return Observation(event_id=f"f{n}", source="feedback_response", at=T0 + timedelta(minutes=n), team="desk",
                           value=score)

    history = [response(n, 90) for n in range(5)] + [response(n, 60) for n in range(5, 24)]
    fired = rule.evaluate(history[-1], history)  # last 20: one 90, nineteen 60
    assert fired is not None and fired.evidence == tuple(f"f{n}" for n in range(4, 24)) and fired.observed == 61.5
    assert rule.evaluate(history[10], history[:11]) is None  # fewer than 20 responses: no verdict yet
    good = [response(n, 75) for n in range(30)]
    assert rule.evaluate(good[-1], good) is None


_JUDGED_RULES = [*DEFAULT_RULES.values(),
                 SignalRule.from_spec("csat-week", 1, {"source": "feedback_response", "subject": "team",
                                                       "mode": "mean_below", "threshold": 70, "last_n": 4,
                                                       "window_seconds": 3 * 86400})]


@given(st.sampled_from(_JUDGED_RULES),
       st.lists(st.tuples(st.integers(0, 20 * 24), st.sampled_from(["P1", "P2"]), st.integers(0, 100),
                          st.sampled_from(["incident", "request"])), min_size=1, max_size=40),
       st.integers(0, 40))
def test_judging_a_pool_in_time_order_decides_as_evaluating_the_whole_history(rule, arrivals, stored):
    """The signal driver hands `judge` only what a subject's pool (the stored observations, then the batch's one
    by one) shows as of its newest observation; every decision (fired or not, score, evidence) is the one
    `evaluate` reaches over everything seen so far."""
    from opsat.risk.app.reactions import _Pool

    observations = [Observation(event_id=f"e{n}", source=rule.source, at=T0 + timedelta(hours=hour), team="network",
                                service="mail", kind=kind, priority=priority, value=float(score))
                    for n, (hour, priority, score, kind) in enumerate(arrivals)]  # arrival order is not time order
    observations = [o for o in observations if rule.subject_of(o) is not None]
    seen = observations[:stored]
    pool = _Pool(seen)
    for o in observations[stored:]:
        pool.add(o)
        seen.append(o)
        subject = rule.subject_of(o)
        assert subject is not None
        assert rule.judge(pool.newest(), subject, pool.visible_to(rule)) == rule.evaluate(pool.newest(), seen)


def test_a_stored_row_becomes_the_observation_its_constructor_builds():
    from opsat.risk.app.reactions import _observation_of

    row = ("e1", "sla_breach", T0, "network", "mail", "incident", "P1", None)
    assert _observation_of(row) == Observation(*row)
    assert vars(_observation_of(row)) == vars(Observation(*row))
