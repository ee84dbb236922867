"""Configuration of the intake rules (per tenant where the service wants it).

Every business default of DOMAIN.md lives here, so that the aggregate never hard-codes one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from opsat.common.calendar import BusinessCalendar, default_calendar
from opsat.common.domain import InvalidInput
from opsat.intake.domain.values import Priority, RequestKind

LEVELS = (1, 2, 3)  # impact: 1 enterprise-wide, 2 department, 3 individual; urgency: 1 high .. 3 low
MatrixCell = tuple[int, int]  # (impact, urgency)


def default_priority_matrix() -> Mapping[MatrixCell, Priority]:
    """Handbook 2.2: P1 = (1,1); P2 = (1,2),(2,1); P3 = (1,3),(2,2),(3,1); P4 = the rest."""
    listed = {
        Priority.P1: [(1, 1)],
        Priority.P2: [(1, 2), (2, 1)],
        Priority.P3: [(1, 3), (2, 2), (3, 1)],
    }
    return _fill_matrix(listed)


@dataclass(frozen=True)
class IntakePolicy:
    """How intake decides: priorities, windows and which kinds need approval or a confirmed requirement."""

    priority_matrix: Mapping[MatrixCell, Priority] = field(default_factory=default_priority_matrix, hash=False)
    # Calendar days during which the requester may reopen a closed request: counted from the (last) resolve,
    # or from the close when it was an auto-close (which a long holiday can push past the window's end).
    reopen_window_days: int = 7
    # Business days after which an unanswered delivery closes by itself, counted from the first working
    # moment at or after the resolve (so the close falls in working hours).
    auto_close_business_days: int = 3
    # Catalogue: kinds that need a manager's approval before work starts.
    approval_required_kinds: frozenset[RequestKind] = frozenset({RequestKind.change})
    # Kinds whose scope and acceptance criteria the requester must confirm before work starts.
    requirement_confirmation_kinds: frozenset[RequestKind] = frozenset(
        {RequestKind.service_request, RequestKind.change}
    )
    calendar: BusinessCalendar = field(default_factory=default_calendar)
    # The SLA monitor's calendar whose latest version (followed from its events) replaces `calendar` for
    # auto-close; None keeps `calendar`. An organisation configuring its own `calendar` follows none by default.
    follows_calendar: str | None = "cn-default"
    # The organisation's service tier (drives service levels): configuration, never the requester's say.
    customer_tier: str = "standard"

    def __post_init__(self) -> None:
        object.__setattr__(self, "priority_matrix", _checked_matrix(self.priority_matrix))
        for name in ("approval_required_kinds", "requirement_confirmation_kinds"):
            object.__setattr__(self, name, _kinds(getattr(self, name), name))
        for name in ("reopen_window_days", "auto_close_business_days"):
            _non_negative_int(getattr(self, name), name)
        if not isinstance(self.calendar, BusinessCalendar):
            raise InvalidInput("calendar must be a BusinessCalendar", field="calendar")
        if self.follows_calendar is not None and not (
                isinstance(self.follows_calendar, str) and _CALENDAR_ID.match(self.follows_calendar)):
            raise InvalidInput("follows_calendar is a calendar id of the SLA monitor, or null",
                               field="follows_calendar")

    def priority_for(self, impact: int, urgency: int) -> Priority:
        _level(impact, "impact")
        _level(urgency, "urgency")
        return self.priority_matrix[(impact, urgency)]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> IntakePolicy:
        """Build from JSON-like configuration; missing keys keep their defaults.

        {"priority_matrix": {"P1": [[1, 1]], "P2": [[1, 2], [2, 1]], "P3": [[1, 3], [2, 2], [3, 1]]},
         "reopen_window_days": 7, "auto_close_business_days": 3,
         "approval_required_kinds": ["change"], "requirement_confirmation_kinds": ["service_request", "change"],
         "calendar": {... see BusinessCalendar.from_mapping ...}}
        Cells not listed in the matrix are P4 ("the rest"). Bad input raises InvalidInput naming the key.
        """
        if not isinstance(data, Mapping):
            raise InvalidInput("intake policy must be an object")
        unknown = sorted(set(data) - _CONFIG_KEYS)
        if unknown:
            raise InvalidInput(f"unknown intake setting {unknown[0]!r}", field=unknown[0])
        kwargs: dict[str, Any] = {}
        if "priority_matrix" in data:
            kwargs["priority_matrix"] = _parse_matrix(data["priority_matrix"])
        for name in ("reopen_window_days", "auto_close_business_days"):
            if name in data:
                kwargs[name] = _non_negative_int(data[name], name)
        for name in ("approval_required_kinds", "requirement_confirmation_kinds"):
            if name in data:
                kwargs[name] = _kinds(data[name], name)
        if "calendar" in data:
            kwargs["calendar"] = _parse_calendar(data["calendar"])
            kwargs["follows_calendar"] = None
        if "follows_calendar" in data:
            kwargs["follows_calendar"] = data["follows_calendar"]
        if "customer_tier" in data:
            tier = data["customer_tier"]
            if not isinstance(tier, str) or not tier.strip() or len(tier) > 200:
                raise InvalidInput("customer_tier must be a name", field="customer_tier")
            kwargs["customer_tier"] = tier
        return cls(**kwargs)

    def to_mapping(self) -> dict[str, Any]:
        """The inverse of `from_mapping`, JSON-ready (P4 cells listed too)."""
        matrix: dict[str, list[list[int]]] = {p.value: [] for p in Priority}
        for (impact, urgency), priority in sorted(self.priority_matrix.items()):
            matrix[priority.value].append([impact, urgency])
        return {
            "priority_matrix": {p: cells for p, cells in matrix.items() if cells},
            "reopen_window_days": self.reopen_window_days,
            "auto_close_business_days": self.auto_close_business_days,
            "approval_required_kinds": sorted(k.value for k in self.approval_required_kinds),
            "requirement_confirmation_kinds": sorted(k.value for k in self.requirement_confirmation_kinds),
            "calendar": self.calendar.to_mapping(),
            "follows_calendar": self.follows_calendar,
            "customer_tier": self.customer_tier,
        }


_CONFIG_KEYS = frozenset(
    {
        "priority_matrix",
        "reopen_window_days",
        "auto_close_business_days",
        "approval_required_kinds",
        "requirement_confirmation_kinds",
        "calendar",
        "follows_calendar",
        "customer_tier",
    }
)
_CALENDAR_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


def _level(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in LEVELS:
        raise InvalidInput(f"{name} must be 1, 2 or 3", field=name)
    return value


def _non_negative_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{name} must be a whole number of days, 0 or more", field=name)
    return value


def _kinds(values: Any, name: str) -> frozenset[RequestKind]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise InvalidInput(f"{name} must be a list of request kinds", field=name)
    try:
        return frozenset(RequestKind(v) for v in values)
    except ValueError as error:
        raise InvalidInput(f"{name}: {error}", field=name) from error


def _fill_matrix(listed: Mapping[Priority, Iterable[MatrixCell]]) -> Mapping[MatrixCell, Priority]:
    """Cells from `listed` (each at most once); every other cell is P4."""
    matrix: dict[MatrixCell, Priority] = {}
    for priority, cells in listed.items():
        for cell in cells:
            if cell in matrix:
                raise InvalidInput(f"cell {list(cell)} is listed twice", field=f"priority_matrix.{priority.value}")
            matrix[cell] = priority
    for cell in _all_cells():
        matrix.setdefault(cell, Priority.P4)
    return MappingProxyType(matrix)


def _all_cells() -> list[MatrixCell]:
    return [(impact, urgency) for impact in LEVELS for urgency in LEVELS]


def _checked_matrix(matrix: Mapping[MatrixCell, Priority]) -> Mapping[MatrixCell, Priority]:
    if not isinstance(matrix, Mapping) or set(matrix) != set(_all_cells()):
        raise InvalidInput(
            "priority_matrix must give a priority for every (impact, urgency) in 1..3", field="priority_matrix"
        )
    try:
        return MappingProxyType({cell: Priority(p) for cell, p in matrix.items()})
    except ValueError as error:
        raise InvalidInput(str(error), field="priority_matrix") from error


def _parse_matrix(data: Any) -> Mapping[MatrixCell, Priority]:
    if not isinstance(data, Mapping):
        raise InvalidInput("priority_matrix must map P1..P4 to lists of [impact, urgency]", field="priority_matrix")
    listed: dict[Priority, list[MatrixCell]] = {}
    for key, cells in data.items():
        name = f"priority_matrix.{key}"
        try:
            priority = Priority(key)
        except ValueError as error:
            raise InvalidInput(f"{key!r} is not one of P1, P2, P3, P4", field=name) from error
        if isinstance(cells, str) or not isinstance(cells, Iterable):
            raise InvalidInput("expected a list of [impact, urgency] pairs", field=name)
        listed[priority] = [_parse_cell(cell, name) for cell in cells]
    return _fill_matrix(listed)


def _parse_cell(cell: Any, name: str) -> MatrixCell:
    if isinstance(cell, str) or not isinstance(cell, Iterable):
        raise InvalidInput(f"{cell!r} is not an [impact, urgency] pair", field=name)
    pair = list(cell)
    if len(pair) != 2:
        raise InvalidInput(f"{cell!r} is not an [impact, urgency] pair", field=name)
    try:
        return (_level(pair[0], "impact"), _level(pair[1], "urgency"))
    except InvalidInput as error:
        raise InvalidInput(f"{cell!r}: {error.detail}", field=name) from error


def _parse_calendar(data: Any) -> BusinessCalendar:
    try:
        return BusinessCalendar.from_mapping(data)
    except InvalidInput as error:
        where = f"calendar.{error.field}" if error.field else "calendar"
        raise InvalidInput(error.detail, field=where) from error
