"""Scoring (weighted 0-100, band, NPS category) and templates (DOMAIN.md defaults, weights summing to 100 %)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opsat.common.domain import InvalidInput
from opsat.feedback.domain import scoring, templates
from opsat.feedback.domain.templates import DEFAULT_TEMPLATE

DIMENSIONS = [d.key for d in DEFAULT_TEMPLATE.dimensions]
ratings = st.fixed_dictionaries({k: st.integers(1, 5) for k in DIMENSIONS})


def test_the_default_template_has_the_handbooks_dimensions_weights_and_labels():
    assert DEFAULT_TEMPLATE.weights == {"response_speed": 20, "professionalism": 25, "attitude": 20,
                                        "resolution": 35}
    assert [d.label_zh for d in DEFAULT_TEMPLATE.dimensions] == ["响应速度", "专业能力", "服务态度", "解决效果"]
    assert all(d.label_en for d in DEFAULT_TEMPLATE.dimensions)
    assert templates.Template.from_spec(DEFAULT_TEMPLATE.to_spec()) == DEFAULT_TEMPLATE


def test_a_weighted_score_of_mixed_ratings():
    # 20*5 + 25*4 + 20*3 + 35*2 = 330 -> mean 3.3 -> 66
    score = scoring.weighted_score({"response_speed": 5, "professionalism": 4, "attitude": 3, "resolution": 2},
                                   DEFAULT_TEMPLATE.weights)
    assert score == 66.0 and scoring.band(score).key == "neutral"


@pytest.mark.parametrize(("score", "band"), [(100, "very_satisfied"), (90, "very_satisfied"), (89.99, "satisfied"),
                                             (75, "satisfied"), (74.99, "neutral"), (60, "neutral"),
                                             (59.99, "dissatisfied"), (40, "dissatisfied"),
                                             (39.99, "very_dissatisfied"), (20, "very_dissatisfied")])
def test_bands_at_their_edges(score, band):
    assert scoring.band(score).key == band


@given(ratings)
def test_a_score_lies_between_the_lowest_and_highest_rating_times_20(r):
    score = scoring.weighted_score(r, DEFAULT_TEMPLATE.weights)
    assert 20 * min(r.values()) <= score <= 20 * max(r.values())
    assert 20 <= score <= 100


@given(ratings, st.sampled_from(DIMENSIONS))
def test_rating_one_dimension_higher_never_lowers_the_score(r, key):
    if r[key] < 5:
        better = {**r, key: r[key] + 1}
        assert scoring.weighted_score(better, DEFAULT_TEMPLATE.weights) > scoring.weighted_score(
            r, DEFAULT_TEMPLATE.weights)


@pytest.mark.parametrize(("nps", "category"), [(0, "detractor"), (6, "detractor"), (7, "passive"), (8, "passive"),
                                               (9, "promoter"), (10, "promoter")])
def test_nps_categories(nps, category):
    assert scoring.nps_category(nps) == category


def test_net_promoter_score_is_promoters_minus_detractors_in_per_cent():
    assert scoring.net_promoter_score([10, 9, 8, 3]) == 25.0
    assert scoring.net_promoter_score([]) is None


@given(st.lists(st.integers(0, 10), min_size=1))
def test_net_promoter_score_lies_between_minus_and_plus_100(answers):
    assert -100 <= scoring.net_promoter_score(answers) <= 100


def dims(*weights: int) -> list[dict]:
    return [{"key": f"d{i}", "weight": w, "label_zh": "维度", "label_en": "dim"} for i, w in enumerate(weights)]


def test_weights_must_sum_to_100_per_cent():
    with pytest.raises(InvalidInput) as error:
        templates.build("t", 1, dims(50, 40))
    assert error.value.field == "dimensions" and "90" in error.value.detail
    assert templates.build("t", 1, dims(50, 50)).weights == {"d0": 50, "d1": 50}


@pytest.mark.parametrize(("dimensions", "field"), [
    ([], "dimensions"),
    ([{"key": "a", "weight": 100.5, "label_zh": "x", "label_en": "x"}], "dimensions.0.weight"),
    ([{"key": "a", "weight": 0, "label_zh": "x", "label_en": "x"}], "dimensions.0.weight"),
    ([{"key": "A!", "weight": 100, "label_zh": "x", "label_en": "x"}], "dimensions.0.key"),
    ([{"key": "a", "weight": 100, "label_zh": "", "label_en": "x"}], "dimensions.0.label_zh"),
    ([{"key": "a", "weight": 50, "label_zh": "x", "label_en": "x"},
      {"key": "a", "weight": 50, "label_zh": "x", "label_en": "x"}], "dimensions.1.key"),
])
def test_a_bad_template_names_the_field(dimensions, field):
    with pytest.raises(InvalidInput) as error:
        templates.build("t", 1, dimensions)
    assert error.value.field == field


@given(st.lists(st.integers(1, 100), min_size=1, max_size=12))
def test_any_weights_are_accepted_exactly_when_they_sum_to_100(weights):
    try:
        templates.build("t", 1, dims(*weights))
        accepted = True
    except InvalidInput:
        accepted = False
    assert accepted == (sum(weights) == 100)
