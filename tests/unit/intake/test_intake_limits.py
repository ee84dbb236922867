"""One definition of limits: every constraint of the HTTP bodies is the domain's limit for that field."""

from __future__ import annotations

from typing import Any

import pytest

from opsat.intake.api import schemas as s
from opsat.intake.domain import values as v
from opsat.intake.domain.policy import LEVELS


def _bodies() -> list[type[s.Body]]:
    found, todo = [], list(s.Body.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda cls: cls.__name__)


def _constraints(name: str, schema: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(field, keyword, value) for every limit in a property's schema, through anyOf and array items."""
    found = [(name, k, schema[k]) for k in ("maxLength", "maximum", "exclusiveMaximum", "maxItems") if k in schema]
    for sub in schema.get("anyOf", []):
        found += _constraints(name, sub)
    if "items" in schema:
        found += _constraints(name, schema["items"])
    return found


def test_every_body_model_is_walked() -> None:
    assert {"SubmitBody", "ReasonBody", "TimeBody", "AssessmentBody", "RequirementChangeBody"} <= {
        cls.__name__ for cls in _bodies()}


@pytest.mark.parametrize("body", _bodies(), ids=lambda cls: cls.__name__)
def test_body_limits_are_the_domains(body: type[s.Body]) -> None:
    schema = body.model_json_schema()
    limits = [c for name, prop in schema.get("properties", {}).items() for c in _constraints(name, prop)]
    for field, keyword, value in limits:
        if keyword == "maxLength":
            assert field in v.TEXT_LIMITS, f"{body.__name__}.{field} has a length limit the domain does not know"
            assert value == v.TEXT_LIMITS[field], (body.__name__, field)
        else:
            assert (field, keyword, value) in {
                ("watchers", "maxItems", v.MAX_WATCHERS),
                ("minutes", "maximum", v.MAX_MINUTES_PER_ENTRY),
                ("effort_hours", "maximum", v.MAX_EFFORT_HOURS),
                ("impact", "maximum", max(LEVELS)),
                ("urgency", "maximum", max(LEVELS)),
            }, (body.__name__, field, keyword, value)
