"""A scorecard: each KPI's value, score and weighted contribution, the total and the grade.

The weight of a KPI that does not apply to the subject (a rate with nothing to divide by: no CSAT
responses, no resolutions) is shared among those that do, in proportion to their weights; a subject to
which no rate or mean applies had no measurable work and is not graded. Numbers are rounded half-up to
two places at the end of each step, so a hand calculation gives the same digits:
  contribution = round(score × weight / applicable weight), total = round(Σ score × weight / applicable weight).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from opsat.appraisal.domain.facts import Totals
from opsat.appraisal.domain.kpis import HUNDRED, Catalogue, as_number
from opsat.common.domain import InvalidInput

CENT = Decimal("0.01")
NOT_GRADED = "-"


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class GradeScale:
    """Lowest total of each grade, best first; below the last one: `lowest`. DOMAIN.md: A 90, B 80, C 70, else D."""

    levels: tuple[tuple[str, Decimal], ...] = (("A", Decimal(90)), ("B", Decimal(80)), ("C", Decimal(70)))
    lowest: str = "D"

    def grade(self, total: Decimal) -> str:
        return next((name for name, at_least in self.levels if total >= at_least), self.lowest)

    def to_spec(self) -> dict[str, Any]:
        return {"levels": [{"grade": g, "at_least": str(v)} for g, v in self.levels], "lowest": self.lowest}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> GradeScale:
        raw = spec.get("levels") if isinstance(spec, Mapping) else None
        if not isinstance(raw, list | tuple) or not raw:
            raise InvalidInput("grades list at least one level {grade, at_least}", field="grades.levels")
        levels = []
        for i, level in enumerate(raw):
            name = level.get("grade") if isinstance(level, Mapping) else None
            if not isinstance(name, str) or not 1 <= len(name.strip()) <= 8:
                raise InvalidInput("a grade is named by 1 to 8 characters", field=f"grades.levels[{i}].grade")
            at_least = as_number(level.get("at_least"), f"grades.levels[{i}].at_least")
            if not 0 < at_least <= 100:
                raise InvalidInput("a grade's lowest total lies in (0, 100]", field=f"grades.levels[{i}].at_least")
            if levels and at_least >= levels[-1][1]:
                raise InvalidInput("grades go from the best down: each lowest total below the previous",
                                   field=f"grades.levels[{i}].at_least")
            levels.append((name.strip(), at_least))
        lowest = spec.get("lowest", "D")
        names = [n for n, _ in levels] + [lowest]
        if not isinstance(lowest, str) or not 1 <= len(lowest.strip()) <= 8 or len(set(names)) != len(names):
            raise InvalidInput("the lowest grade is named by 1 to 8 characters, unlike the others",
                               field="grades.lowest")
        return cls(tuple(levels), lowest.strip())


DEFAULT_GRADES = GradeScale()


@dataclass(frozen=True)
class Line:
    """One KPI on a scorecard. `value`/`score` None: the KPI does not apply to this subject."""

    kpi_id: str
    value: Decimal | None
    score: Decimal | None
    weight: Decimal  # as configured
    effective_weight: Decimal  # after sharing out the weight of KPIs that do not apply
    contribution: Decimal
    facts: Mapping[str, Decimal] = field(default_factory=dict)  # the totals it came from (drill-down: their events)
    adjusted_from: Decimal | None = None  # the calculated score, when a manager adjusted it
    reason: str | None = None


@dataclass(frozen=True)
class Scorecard:
    subject: str
    catalogue_version: int
    lines: tuple[Line, ...]
    total: Decimal | None
    grade: str

    def line(self, kpi_id: str) -> Line | None:
        return next((line for line in self.lines if line.kpi_id == kpi_id), None)

    def with_score(self, kpi_id: str, score: Decimal, reason: str, scale: GradeScale) -> Scorecard:
        """The card with one KPI's score replaced (the calculated one kept on the line), re-totalled and re-graded."""
        line = self.line(kpi_id)
        if line is None or line.score is None:
            raise InvalidInput(f"{kpi_id} has no score on this scorecard to change", field="kpi_id")
        if not 0 <= score <= 100:
            raise InvalidInput("a score lies between 0 and 100", field="score")
        original = line.adjusted_from if line.adjusted_from is not None else line.score
        changed = replace(line, score=cents(score), adjusted_from=original, reason=reason,
                          contribution=cents(score * line.effective_weight / HUNDRED))
        return _totalled(self.subject, self.catalogue_version,
                         tuple(changed if x.kpi_id == kpi_id else x for x in self.lines), scale)

    def to_dict(self) -> dict[str, Any]:
        def num(x: Decimal | None) -> str | None:
            return None if x is None else str(x)
        return {"subject": self.subject, "catalogue_version": self.catalogue_version, "total": num(self.total),
                "grade": self.grade, "lines": [
                    {"kpi_id": x.kpi_id, "value": num(x.value), "score": num(x.score), "weight": str(x.weight),
                     "effective_weight": str(x.effective_weight), "contribution": str(x.contribution),
                     "facts": {k: str(v) for k, v in x.facts.items()},
                     "adjusted_from": num(x.adjusted_from), "reason": x.reason} for x in self.lines]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scorecard:
        def num(x: str | None) -> Decimal | None:
            return None if x is None else Decimal(x)
        lines = tuple(Line(kpi_id=x["kpi_id"], value=num(x["value"]), score=num(x["score"]),
                           weight=Decimal(x["weight"]), effective_weight=Decimal(x["effective_weight"]),
                           contribution=Decimal(x["contribution"]),
                           facts={k: Decimal(v) for k, v in x.get("facts", {}).items()},
                           adjusted_from=num(x.get("adjusted_from")), reason=x.get("reason"))
                      for x in data["lines"])
        return cls(subject=data["subject"], catalogue_version=data["catalogue_version"], lines=lines,
                   total=num(data["total"]), grade=data["grade"])


def calculate(subject: str, totals: Totals, catalogue: Catalogue, scale: GradeScale = DEFAULT_GRADES) -> Scorecard:
    values = {k.kpi_id: k.value(totals.amounts) for k in catalogue.kpis}
    applicable = sum((k.weight for k in catalogue.kpis if values[k.kpi_id] is not None), Decimal(0))
    measured = any(values[k.kpi_id] is not None for k in catalogue.kpis if k.measure != "count")
    lines = []
    for kpi in catalogue.kpis:
        value = values[kpi.kpi_id]
        names = (*kpi.numerator, *((kpi.denominator,) if kpi.denominator else ()))
        facts = {n: totals.amounts.get(n, Decimal(0)) for n in names}
        if value is None or not measured:
            lines.append(Line(kpi.kpi_id, None if value is None else cents(value), None, kpi.weight, Decimal(0),
                              Decimal(0), facts))
            continue
        score = cents(kpi.score(value))
        effective = kpi.weight * HUNDRED / applicable
        lines.append(Line(kpi.kpi_id, cents(value), score, kpi.weight, cents(effective),
                          cents(score * effective / HUNDRED), facts))
    return _totalled(subject, catalogue.version, tuple(lines), scale)


def _totalled(subject: str, version: int, lines: Sequence[Line], scale: GradeScale) -> Scorecard:
    scored = [x for x in lines if x.score is not None]
    if not scored:
        return Scorecard(subject, version, tuple(lines), None, NOT_GRADED)
    weight = sum((x.weight for x in scored), Decimal(0))
    total = cents(sum((x.score * x.weight for x in scored), Decimal(0)) / weight)
    return Scorecard(subject, version, tuple(lines), total, scale.grade(total))
