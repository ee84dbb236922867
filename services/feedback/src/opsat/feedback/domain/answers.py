"""Answering rules: every dimension rated explicitly (nothing is pre-selected), NPS 0-10, a comment required
below the template's threshold, and the follow-up reasons of the response."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from opsat.common.domain import InvalidInput
from opsat.feedback.domain import scoring
from opsat.feedback.domain.templates import Template


@dataclass(frozen=True)
class Judged:
    score: float
    band: str
    nps_category: str
    follow_up_reasons: tuple[str, ...]


def judge(template: Template, ratings: Mapping[str, object], nps: object, comment: str | None) -> Judged:
    """The response's score and follow-up reasons, or InvalidInput naming the field at fault."""
    for key in ratings:
        if key not in template.weights:
            raise InvalidInput(f"{key!r} is no dimension of template {template.template_id} "
                               f"v{template.version}", field=f"ratings.{key}")
    for key in template.weights:
        value = ratings.get(key)
        if value is None:
            raise InvalidInput("rate every dimension (nothing is pre-selected)", field=f"ratings.{key}")
        if not isinstance(value, int) or isinstance(value, bool) or not (
                scoring.RATING_MIN <= value <= scoring.RATING_MAX):
            raise InvalidInput("a rating is a whole number 1-5", field=f"ratings.{key}")
    if nps is None:
        raise InvalidInput("answer the recommendation question (0-10)", field="nps")
    if not isinstance(nps, int) or isinstance(nps, bool) or not scoring.NPS_MIN <= nps <= scoring.NPS_MAX:
        raise InvalidInput("the recommendation score is a whole number 0-10", field="nps")
    text = (comment or "").strip()
    if len(text) > template.max_comment_chars:
        raise InvalidInput(f"a comment has at most {template.max_comment_chars} characters", field="comment")
    score = scoring.weighted_score({k: int(v) for k, v in ratings.items()}, template.weights)  # type: ignore[call-overload]
    if score < template.comment_required_below and not text:
        raise InvalidInput(f"a score below {template.comment_required_below:g} needs a comment saying why",
                           field="comment")
    category = scoring.nps_category(nps)
    reasons = tuple(r for r, applies in (("low_score", score < template.follow_up_below),
                                         ("detractor", category == "detractor")) if applies)
    return Judged(score, scoring.band(score).key, category, reasons)
