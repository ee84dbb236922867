"""Scoring of one response (handbook 4.2): weighted score 0-100, band, NPS category; and NPS of many.

Each dimension is rated 1-5 and weighted in whole per cent (weights sum to 100), so the score is exact:
the weighted mean of the ratings times 20 (all 5 -> 100, all 3 -> 60 "neutral", all 1 -> 20).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

RATING_MIN, RATING_MAX = 1, 5
NPS_MIN, NPS_MAX = 0, 10
SATISFIED_FROM = 75  # "% satisfied" counts the satisfied and very satisfied bands


@dataclass(frozen=True)
class Band:
    key: str
    floor: int
    zh: str
    en: str


BANDS: tuple[Band, ...] = (
    Band("very_satisfied", 90, "非常满意", "very satisfied"),
    Band("satisfied", 75, "满意", "satisfied"),
    Band("neutral", 60, "一般", "neutral"),
    Band("dissatisfied", 40, "不满意", "dissatisfied"),
    Band("very_dissatisfied", 0, "非常不满意", "very dissatisfied"),
)


def weighted_score(ratings: Mapping[str, int], weights: Mapping[str, int]) -> float:
    """Score 0-100 of ratings (dimension -> 1..5) under weights (dimension -> per cent, summing to 100)."""
    if set(ratings) != set(weights):
        raise ValueError("ratings and weights name different dimensions")
    if sum(weights.values()) != 100:
        raise ValueError("weights must sum to 100")
    total = sum(Decimal(weights[k]) * ratings[k] for k in weights)  # sum(w * r), w in per cent
    return float((total / 5).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))  # /100 * 20


def band(score: float) -> Band:
    return next(b for b in BANDS if score >= b.floor)


def nps_category(nps: int) -> str:
    if not NPS_MIN <= nps <= NPS_MAX:
        raise ValueError("NPS is 0-10")
    return "promoter" if nps >= 9 else "passive" if nps >= 7 else "detractor"


def net_promoter_score(answers: Iterable[int]) -> float | None:
    """% promoters - % detractors (-100..100); None without answers."""
    categories = [nps_category(a) for a in answers]
    if not categories:
        return None
    return round(100 * (categories.count("promoter") - categories.count("detractor")) / len(categories), 2)
