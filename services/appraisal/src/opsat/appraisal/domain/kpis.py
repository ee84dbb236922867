"""The KPI catalogue (7.1) as versioned configuration, and the linear scoring of one KPI.

A KPI is measured from facts (numbers projected out of the other services' events, see `facts`):
- `rate`: 100 × numerator / denominator (e.g. resolved on time per resolution measured),
- `mean`: numerator / denominator (e.g. the sum of CSAT scores per response),
- `count`: the numerator alone (e.g. complaints).
A rate or mean with nothing to divide by does not apply to that subject; its weight is shared among the
KPIs that do (`scorecards`). Scores run linearly from the floor (0) to the target (100), clamped; for a
lower-is-better KPI the floor lies above the target. All arithmetic is Decimal, so a calculation gives
the same digits wherever and whenever it runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from opsat.appraisal.domain.facts import FACTS
from opsat.common.domain import InvalidInput

MEASURES = ("rate", "mean", "count")
DIRECTIONS = ("higher", "lower")
HUNDRED = Decimal(100)
_KPI_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_MAX_KPIS = 30


@dataclass(frozen=True)
class Kpi:
    kpi_id: str
    label_zh: str
    label_en: str
    measure: str
    numerator: tuple[str, ...]
    denominator: str | None
    direction: str
    target: Decimal
    floor: Decimal
    weight: Decimal  # percent of the total

    def value(self, totals: Mapping[str, Decimal]) -> Decimal | None:
        """The KPI's value from fact totals; None when a rate or mean has nothing to divide by."""
        numerator = sum((totals.get(f, Decimal(0)) for f in self.numerator), Decimal(0))
        if self.measure == "count":
            return numerator
        denominator = totals.get(self.denominator or "", Decimal(0))
        if denominator == 0:
            return None
        ratio = numerator / denominator
        return ratio * HUNDRED if self.measure == "rate" else ratio

    def score(self, value: Decimal) -> Decimal:
        """0 at the floor, 100 at the target, linear between, clamped outside."""
        fraction = (value - self.floor) / (self.target - self.floor)
        return min(HUNDRED, max(Decimal(0), fraction * HUNDRED))

    def to_spec(self) -> dict[str, Any]:
        return {"kpi_id": self.kpi_id, "label_zh": self.label_zh, "label_en": self.label_en,
                "measure": self.measure, "numerator": list(self.numerator), "denominator": self.denominator,
                "direction": self.direction, "target": str(self.target), "floor": str(self.floor),
                "weight": str(self.weight)}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], at: str) -> Kpi:
        """Validated; `at` names the entry in errors (e.g. "kpis[2]")."""
        if not isinstance(spec, Mapping):
            raise InvalidInput("a KPI is an object", field=at)
        kpi_id = spec.get("kpi_id")
        if not isinstance(kpi_id, str) or not _KPI_ID.match(kpi_id):
            raise InvalidInput("a KPI id is a-z, 0-9 and '_', starting with a letter, at most 40 characters",
                               field=f"{at}.kpi_id")
        labels = {}
        for name in ("label_zh", "label_en"):
            label = spec.get(name, kpi_id)
            if not isinstance(label, str) or not label.strip() or len(label) > 80:
                raise InvalidInput("a label is 1 to 80 characters", field=f"{at}.{name}")
            labels[name] = label.strip()
        measure = spec.get("measure")
        if measure not in MEASURES:
            raise InvalidInput(f"measure is one of {', '.join(MEASURES)}", field=f"{at}.measure")
        numerator = spec.get("numerator")
        if isinstance(numerator, str):
            numerator = [numerator]
        if not isinstance(numerator, list | tuple) or not numerator or any(f not in FACTS for f in numerator):
            raise InvalidInput(f"numerator is a list of facts from: {', '.join(sorted(FACTS))}",
                               field=f"{at}.numerator")
        denominator = spec.get("denominator")
        if measure == "count":
            if denominator is not None:
                raise InvalidInput("a count has no denominator", field=f"{at}.denominator")
        elif denominator not in FACTS:
            raise InvalidInput(f"a {measure} divides by a fact from: {', '.join(sorted(FACTS))}",
                               field=f"{at}.denominator")
        direction = spec.get("direction", "higher")
        if direction not in DIRECTIONS:
            raise InvalidInput("direction is 'higher' or 'lower' (which is better)", field=f"{at}.direction")
        target = as_number(spec.get("target"), f"{at}.target")
        floor = as_number(spec.get("floor"), f"{at}.floor")
        if target == floor:
            raise InvalidInput("the target must differ from the floor", field=f"{at}.target")
        if (direction == "higher") != (target > floor):
            side = "above" if direction == "higher" else "below"
            raise InvalidInput(f"when {direction} is better the target lies {side} the floor", field=f"{at}.target")
        if measure == "rate" and not all(0 <= x <= 100 for x in (target, floor)):
            raise InvalidInput("a rate's target and floor are percentages (0-100)", field=f"{at}.target")
        if measure != "rate" and min(target, floor) < 0:
            raise InvalidInput("target and floor are not negative", field=f"{at}.floor")
        weight = as_number(spec.get("weight"), f"{at}.weight")
        if not 0 < weight <= 100:
            raise InvalidInput("a weight is a percentage greater than 0", field=f"{at}.weight")
        return cls(kpi_id=kpi_id, measure=measure, numerator=tuple(numerator), denominator=denominator,
                   direction=direction, target=target, floor=floor, weight=weight, **labels)


@dataclass(frozen=True)
class Catalogue:
    """One version of the KPI catalogue; weights sum to exactly 100 %."""

    version: int
    kpis: tuple[Kpi, ...]

    def to_spec(self) -> dict[str, Any]:
        return {"kpis": [k.to_spec() for k in self.kpis]}

    @classmethod
    def from_spec(cls, version: int, spec: Mapping[str, Any]) -> Catalogue:
        raw = spec.get("kpis") if isinstance(spec, Mapping) else None
        if not isinstance(raw, list | tuple) or not raw:
            raise InvalidInput("a catalogue lists at least one KPI", field="kpis")
        if len(raw) > _MAX_KPIS:
            raise InvalidInput(f"a catalogue lists at most {_MAX_KPIS} KPIs", field="kpis")
        kpis = tuple(Kpi.from_spec(k, f"kpis[{i}]") for i, k in enumerate(raw))
        seen: set[str] = set()
        for i, kpi in enumerate(kpis):
            if kpi.kpi_id in seen:
                raise InvalidInput(f"KPI {kpi.kpi_id} is listed twice", field=f"kpis[{i}].kpi_id")
            seen.add(kpi.kpi_id)
        total = sum((k.weight for k in kpis), Decimal(0))
        if total != HUNDRED:
            raise InvalidInput(f"the weights sum to {total} %, not 100 %", field="kpis.weight")
        return cls(version=version, kpis=kpis)


def as_number(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise InvalidInput("a number is required", field=field)
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise InvalidInput("a number is required", field=field) from None
    if not number.is_finite() or abs(number) > 10**9:
        raise InvalidInput("a finite number is required", field=field)
    return number


def _kpi(kpi_id: str, zh: str, en: str, measure: str, numerator: Iterable[str], denominator: str | None,
         direction: str, target: int, floor: int, weight: int) -> dict[str, Any]:
    return {"kpi_id": kpi_id, "label_zh": zh, "label_en": en, "measure": measure, "numerator": list(numerator),
            "denominator": denominator, "direction": direction, "target": target, "floor": floor, "weight": weight}


# DOMAIN.md's seven defaults (weights there; targets and floors are this product's starting values).
DEFAULT_CATALOGUE = Catalogue.from_spec(1, {"kpis": [
    _kpi("sla_resolution", "SLA 解决达标率", "SLA resolution compliance", "rate",
         ["resolved_on_time"], "resolution_measured", "higher", 95, 70, 25),
    _kpi("sla_response", "SLA 响应达标率", "SLA response compliance", "rate",
         ["responded_on_time"], "response_measured", "higher", 95, 70, 15),
    _kpi("csat", "客户满意度", "Customer satisfaction", "mean",
         ["csat_score_sum"], "csat_responses", "higher", 90, 60, 25),
    _kpi("first_time_resolution", "一次解决率", "First-time resolution", "rate",
         ["first_time_resolved"], "resolved", "higher", 90, 60, 10),
    _kpi("reopen_rate", "重开率", "Reopen rate", "rate", ["reopened"], "resolved", "lower", 2, 15, 5),
    _kpi("complaints", "投诉", "Complaints", "count", ["complaints"], None, "lower", 0, 3, 10),
    _kpi("risk_record", "风险与应急记录", "Risk and emergency record", "count",
         ["risks", "emergencies"], None, "lower", 0, 3, 10),
]})
