"""Outages of named business services, reported by monitoring (a service account): availability's facts.

An outage is a stream named by the monitor's own id for it (so a repeated report is the same outage): reported
with its start (and its end, when known), then ended. An end before the start, an unknown business service
or an unknown severity is refused naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from opsat.common.domain import AlreadyExists, Conflict, DomainEvent, InvalidInput, NotFound
from opsat.sla_monitor.domain import commands as c
from opsat.sla_monitor.domain import events as ev

SEVERITIES = ("critical", "major", "minor")


@dataclass(frozen=True)
class Outage:
    outage_id: str
    service: str
    severity: str
    started_at: datetime
    ended_at: datetime | None = None


def evolve(state: Outage | None, event: DomainEvent) -> Outage:
    match event:
        case ev.OutageReported():
            return Outage(event.outage_id, event.service, event.severity, event.started_at, event.ended_at)
        case ev.OutageEnded() if state is not None:
            return replace(state, ended_at=event.ended_at)
    raise Conflict("this id names something else than an outage", field="outage_id", code="id_taken")


def _instant(value: Any, field: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput("give an ISO 8601 date-time with a time zone offset", field=field)
    return value


def decide(state: Outage | None, command: Any, now: datetime, by: str, services: dict[str, float]
           ) -> list[DomainEvent]:
    match command:
        case c.ReportOutage():
            if state is not None:
                raise AlreadyExists(f"outage {command.outage_id} is already reported", field="outage_id")
            if command.service not in services:
                raise InvalidInput(f"{command.service!r} is not a business service"
                                   + (f"; one of {', '.join(sorted(services))}" if services else ""), field="service")
            if command.severity not in SEVERITIES:
                raise InvalidInput(f"severity is one of {', '.join(SEVERITIES)}", field="severity")
            started = _instant(command.started_at, "started_at")
            ended = _instant(command.ended_at, "ended_at") if command.ended_at is not None else None
            if ended is not None and ended < started:
                raise InvalidInput("an outage ends after it starts", field="ended_at")
            return [ev.OutageReported(outage_id=command.outage_id, service=command.service, severity=command.severity,
                                      started_at=started, ended_at=ended, at=now, by=by)]
        case c.EndOutage():
            if state is None:
                raise NotFound(f"outage {command.outage_id} not found", field="outage_id")
            if state.ended_at is not None:
                raise Conflict("the outage has already ended", code="outage_ended")
            ended = _instant(command.ended_at, "ended_at")
            if ended < state.started_at:
                raise InvalidInput("an outage ends after it starts", field="ended_at")
            return [ev.OutageEnded(outage_id=command.outage_id, service=state.service, ended_at=ended, at=now, by=by)]
    raise TypeError(f"no outage rule for {type(command).__name__}")
