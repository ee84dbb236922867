"""Incentives and the use of results (7.3, 7.4): a rule table grade → bonus coefficient and recognition,
and which grades get an improvement plan (goals for the KPIs scored below `goal_below`, reviewed after
`review_days`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from opsat.appraisal.domain.kpis import as_number
from opsat.common.domain import InvalidInput


@dataclass(frozen=True)
class Rule:
    grade: str
    bonus_coefficient: Decimal
    recognition: str | None = None
    improvement_plan: bool = False


@dataclass(frozen=True)
class IncentiveRules:
    rules: tuple[Rule, ...]
    goal_below: Decimal = Decimal(70)
    review_days: int = 30

    def rule(self, grade: str) -> Rule | None:
        return next((r for r in self.rules if r.grade == grade), None)

    def to_spec(self) -> dict[str, Any]:
        return {"rules": [{"grade": r.grade, "bonus_coefficient": str(r.bonus_coefficient),
                           "recognition": r.recognition, "improvement_plan": r.improvement_plan}
                          for r in self.rules],
                "goal_below": str(self.goal_below), "review_days": self.review_days}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> IncentiveRules:
        raw = spec.get("rules") if isinstance(spec, Mapping) else None
        if not isinstance(raw, list | tuple) or not raw:
            raise InvalidInput("incentives list at least one rule {grade, bonus_coefficient}", field="incentives.rules")
        rules, seen = [], set()
        for i, r in enumerate(raw):
            grade = r.get("grade") if isinstance(r, Mapping) else None
            if not isinstance(grade, str) or not grade.strip() or grade in seen:
                raise InvalidInput("each rule names a grade once", field=f"incentives.rules[{i}].grade")
            seen.add(grade)
            coefficient = as_number(r.get("bonus_coefficient"), f"incentives.rules[{i}].bonus_coefficient")
            if not 0 <= coefficient <= 10:
                raise InvalidInput("a bonus coefficient lies between 0 and 10",
                                   field=f"incentives.rules[{i}].bonus_coefficient")
            recognition = r.get("recognition")
            if recognition is not None and (not isinstance(recognition, str) or len(recognition) > 80):
                raise InvalidInput("a recognition is a text of at most 80 characters",
                                   field=f"incentives.rules[{i}].recognition")
            plan = r.get("improvement_plan", False)
            if not isinstance(plan, bool):
                raise InvalidInput("improvement_plan is true or false", field=f"incentives.rules[{i}].improvement_plan")
            rules.append(Rule(grade, coefficient, recognition, plan))
        goal_below = as_number(spec.get("goal_below", 70), "incentives.goal_below")
        if not 0 < goal_below <= 100:
            raise InvalidInput("goal_below is a score in (0, 100]", field="incentives.goal_below")
        days = spec.get("review_days", 30)
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 366:
            raise InvalidInput("review_days is a whole number of days from 1 to 366", field="incentives.review_days")
        return cls(tuple(rules), goal_below, days)


DEFAULT_INCENTIVES = IncentiveRules((
    Rule("A", Decimal("1.2"), "优秀 Excellent"),
    Rule("B", Decimal("1.0"), "良好 Good"),
    Rule("C", Decimal("0.8")),
    Rule("D", Decimal("0.5"), improvement_plan=True),
))
