"""KPI catalogue validation, linear scoring, weight sharing, rounding and grades: pure, no I/O."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opsat.appraisal.domain.facts import Fact, Totals
from opsat.appraisal.domain.kpis import DEFAULT_CATALOGUE, Catalogue
from opsat.appraisal.domain.scorecards import NOT_GRADED, GradeScale, calculate
from opsat.common.domain import InvalidInput

D = Decimal


def totals(**amounts: int) -> Totals:
    facts = [Fact("alice", date(2026, 11, 2), name, D(amount), f"{name}-{i}")
             for i, (name, amount) in enumerate(amounts.items())]
    return Totals.of(facts)


def spec(**changes):
    kpis = [k.to_spec() for k in DEFAULT_CATALOGUE.kpis]
    kpis[0] = {**kpis[0], **changes}
    return {"kpis": kpis}


def test_default_catalogue_is_domain_md_seven_kpis_summing_to_100():
    weights = {k.kpi_id: k.weight for k in DEFAULT_CATALOGUE.kpis}
    assert weights == {"sla_resolution": 25, "sla_response": 15, "csat": 25, "first_time_resolution": 10,
                       "reopen_rate": 5, "complaints": 10, "risk_record": 10}
    assert {k.kpi_id for k in DEFAULT_CATALOGUE.kpis if k.direction == "lower"} == {
        "reopen_rate", "complaints", "risk_record"}


@pytest.mark.parametrize(("changes", "field"), [
    ({"weight": 30}, "kpis.weight"),
    ({"target": 70}, "kpis[0].target"),  # equal to the floor
    ({"direction": "lower"}, "kpis[0].target"),  # target above the floor yet lower is better
    ({"measure": "median"}, "kpis[0].measure"),
    ({"numerator": ["made_up"]}, "kpis[0].numerator"),
    ({"denominator": None}, "kpis[0].denominator"),
    ({"target": 120}, "kpis[0].target"),
    ({"weight": "abc"}, "kpis[0].weight"),
    ({"weight": 0}, "kpis[0].weight"),
    ({"kpi_id": "csat"}, "kpis[2].kpi_id"),
])
def test_bad_catalogues_name_the_field(changes, field):
    with pytest.raises(InvalidInput) as caught:
        Catalogue.from_spec(2, spec(**changes))
    assert caught.value.field == field


def test_catalogue_round_trips_through_its_spec():
    assert Catalogue.from_spec(1, DEFAULT_CATALOGUE.to_spec()) == DEFAULT_CATALOGUE


def test_linear_score_from_floor_to_target_clamped_both_directions():
    resolution = DEFAULT_CATALOGUE.kpis[0]  # target 95, floor 70
    assert resolution.score(D(70)) == 0 and resolution.score(D(95)) == 100
    assert resolution.score(D("82.5")) == 50
    assert resolution.score(D(50)) == 0 and resolution.score(D(100)) == 100
    reopen = next(k for k in DEFAULT_CATALOGUE.kpis if k.kpi_id == "reopen_rate")  # target 2, floor 15
    assert reopen.score(D(2)) == 100 and reopen.score(D(15)) == 0 and reopen.score(D("8.5")) == 50
    assert reopen.score(D(0)) == 100 and reopen.score(D(40)) == 0


@given(st.decimals(min_value=-1000, max_value=1000, places=2), st.decimals(min_value=-1000, max_value=1000, places=2))
def test_scores_stay_within_0_100_and_better_values_never_score_less(a, b):
    for kpi in DEFAULT_CATALOGUE.kpis:
        low, high = sorted((a, b))
        s_low, s_high = kpi.score(low), kpi.score(high)
        assert 0 <= s_low <= 100 and 0 <= s_high <= 100
        if kpi.direction == "higher":
            assert s_low <= s_high
        else:
            assert s_low >= s_high


def test_a_hand_calculated_scorecard():
    # 20 resolutions measured, 19 on time (95 % → 100); responses 18/20 = 90 % → 80;
    # CSAT 4 responses summing 300 → 75 → 50; 20 resolved, 1 reopened, 19 first time → 95 % → 100 (FTR),
    # reopen 5 % → (15-5)/13 = 76.92; 1 complaint → 66.67; no risks → 100.
    card = calculate("alice", totals(resolution_measured=20, resolved_on_time=19, response_measured=20,
                                     responded_on_time=18, csat_responses=4, csat_score_sum=300, resolved=20,
                                     reopened=1, first_time_resolved=19, complaints=1), DEFAULT_CATALOGUE)
    scores = {x.kpi_id: x.score for x in card.lines}
    assert scores == {"sla_resolution": D("100.00"), "sla_response": D("80.00"), "csat": D("50.00"),
                      "first_time_resolution": D("100.00"), "reopen_rate": D("76.92"), "complaints": D("66.67"),
                      "risk_record": D("100.00")}
    # Σ score × weight / 100 = (2500 + 1200 + 1250 + 1000 + 384.60 + 666.70 + 1000) / 100
    assert card.total == D("80.01") and card.grade == "B"
    line = card.line("complaints")
    assert line.facts == {"complaints": D(1)}


def test_weight_of_a_kpi_that_does_not_apply_is_shared_in_proportion():
    # no survey answered: CSAT's 25 % is shared by the other 75 % → each weight × 100/75
    card = calculate("bob", totals(resolution_measured=10, resolved_on_time=10, response_measured=10,
                                   responded_on_time=10, resolved=10, first_time_resolved=10), DEFAULT_CATALOGUE)
    csat = card.line("csat")
    assert csat.value is None and csat.score is None and csat.contribution == 0
    assert card.line("sla_resolution").effective_weight == D("33.33")
    assert card.total == D("100.00") and card.grade == "A"


def test_nothing_measurable_is_not_graded():
    card = calculate("carol", totals(complaints=0), DEFAULT_CATALOGUE)
    assert card.total is None and card.grade == NOT_GRADED


def test_grades_at_their_thresholds_and_configurable():
    scale = GradeScale()
    assert [scale.grade(D(x)) for x in ("90", "89.99", "80", "70", "69.99")] == ["A", "B", "B", "C", "D"]
    custom = GradeScale.from_spec({"levels": [{"grade": "S", "at_least": 95}, {"grade": "A", "at_least": 85}],
                                   "lowest": "B"})
    assert custom.grade(D(96)) == "S" and custom.grade(D(84)) == "B"
    with pytest.raises(InvalidInput) as caught:
        GradeScale.from_spec({"levels": [{"grade": "A", "at_least": 80}, {"grade": "B", "at_least": 90}]})
    assert caught.value.field == "grades.levels[1].at_least"


def test_calculation_is_deterministic_whatever_the_order_of_facts():
    facts = [Fact("dan", date(2026, 11, d), n, D(1), f"e{d}-{n}") for d in range(1, 10)
             for n in ("resolution_measured", "resolved", "first_time_resolved")]
    a = calculate("dan", Totals.of(facts), DEFAULT_CATALOGUE)
    b = calculate("dan", Totals.of(reversed(facts)), DEFAULT_CATALOGUE)
    assert a == b and a.to_dict() == b.to_dict()
