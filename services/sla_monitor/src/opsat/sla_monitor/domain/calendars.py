"""Business calendars as versioned configuration: the shipped ones are version 1 of their id.

A calendar stream holds the versions an administrator made; every event carries the whole spec of
its version, so a reader (a clock, another service) needs nothing but the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opsat.common.domain import Conflict, DomainEvent, InvalidInput, NotFound
from opsat.common.workhours import WorkCalendar, shipped_calendar
from opsat.sla_monitor.domain import commands as c
from opsat.sla_monitor.domain import events as ev
from opsat.sla_monitor.domain.policies import CONFIG_ID

DEFAULT_CALENDAR = "cn-default"


def shipped() -> dict[str, dict[str, Any]]:
    return {
        DEFAULT_CALENDAR: shipped_calendar().to_spec(),
        "24x7": WorkCalendar.from_spec({"time_zone": "Asia/Shanghai", "always_open": True}).to_spec(),
    }


@dataclass(frozen=True)
class CalendarVersion:
    calendar_id: str
    version: int
    spec: dict[str, Any]


def shipped_version(calendar_id: str) -> CalendarVersion | None:
    spec = shipped().get(calendar_id)
    return CalendarVersion(calendar_id, 1, spec) if spec is not None else None


def evolve(state: CalendarVersion | None, event: DomainEvent) -> CalendarVersion:
    match event:
        case ev.CalendarDefined() | ev.CalendarDaysAdded():
            return CalendarVersion(event.calendar_id, event.version, event.calendar)
    # Calendar and policy ids share one namespace of streams: an id taken by a policy is no calendar.
    raise Conflict(f"{getattr(event, 'policy_id', 'this id')} is a policy, not a calendar", field="calendar_id",
                   code="id_taken")


def decide(state: CalendarVersion | None, command: Any, now: Any, by: str) -> list[DomainEvent]:
    if not CONFIG_ID.match(command.calendar_id):
        raise InvalidInput("a calendar id is a slug: a-z, 0-9 and '-', at most 31 characters", field="calendar_id")
    current = state or shipped_version(command.calendar_id)
    match command:
        case c.DefineCalendar():
            spec = {"time_zone": command.time_zone, "always_open": command.always_open, "hours": command.hours or {},
                    "holidays": list(command.holidays), "makeup_workdays": list(command.makeup_workdays)}
            if command.makeup_hours is not None:
                spec["makeup_hours"] = command.makeup_hours
            calendar = WorkCalendar.from_spec(spec)
            return [ev.CalendarDefined(calendar_id=command.calendar_id, version=(current.version if current else 0) + 1,
                                       calendar=calendar.to_spec(), at=now, by=by)]
        case c.AddCalendarDays():
            if current is None:
                raise NotFound(f"calendar {command.calendar_id} not found", field="calendar_id")
            if not command.holidays and not command.makeup_workdays:
                raise InvalidInput("name at least one holiday or make-up workday", field="holidays")
            spec = dict(current.spec)
            spec["holidays"] = [*spec.get("holidays", []), *command.holidays]
            spec["makeup_workdays"] = [*spec.get("makeup_workdays", []), *command.makeup_workdays]
            calendar = WorkCalendar.from_spec(spec)  # a day now both holiday and make-up day is refused here
            added = WorkCalendar.from_spec({"always_open": True, "holidays": list(command.holidays),
                                            "makeup_workdays": list(command.makeup_workdays)})
            return [ev.CalendarDaysAdded(
                calendar_id=command.calendar_id, version=current.version + 1,
                holidays=[d.isoformat() for d in sorted(added.holidays)],
                makeup_workdays=[d.isoformat() for d in sorted(added.makeup_workdays)],
                calendar=calendar.to_spec(), at=now, by=by)]
    raise TypeError(f"no calendar rule for {type(command).__name__}")
