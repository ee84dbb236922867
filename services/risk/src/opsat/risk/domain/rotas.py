"""On-call rotas (handbook 6.4): weekly rotation per team and role, overrides, hand-over in the team's time zone.

The first shift starts on `starts_on` at `handover_time` (wall time in `time_zone`); each later shift starts
seven days after the previous one at the same wall time, so a daylight-saving change never moves the hand-over.
An override puts someone else on call for [start, end); a rota's overrides never overlap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from opsat.common.domain import Conflict, DomainEvent, InvalidInput, InvalidTransition
from opsat.risk.domain import events as ev

CONFIG_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
_PERSON = re.compile(r"^[^\x00\s][^\x00]{0,199}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True)
class Override:
    override_id: str
    person: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Rota:
    rota_id: str
    version: int
    team: str
    role: str
    time_zone: str
    handover_time: time
    starts_on: date
    members: tuple[str, ...]
    overrides: tuple[Override, ...] = ()

    def to_spec(self) -> dict[str, Any]:
        return {"team": self.team, "role": self.role, "time_zone": self.time_zone,
                "handover_time": self.handover_time.strftime("%H:%M"), "starts_on": self.starts_on.isoformat(),
                "members": list(self.members)}

    @classmethod
    def from_spec(cls, rota_id: str, version: int, spec: dict[str, Any]) -> Rota:
        if not CONFIG_ID.match(rota_id):
            raise InvalidInput("a rota id is a slug: a-z, 0-9 and '-', at most 41 characters", field="rota_id")
        for field in ("team", "role"):
            value = spec.get(field)
            if not isinstance(value, str) or not _PERSON.match(value) or len(value) > 100:
                raise InvalidInput(f"{field} is required", field=field)
        zone = spec.get("time_zone", "Asia/Shanghai")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise InvalidInput(f"{zone!r} is not an IANA time zone", field="time_zone") from None
        handover = spec.get("handover_time", "09:00")
        if not isinstance(handover, str) or not _HHMM.match(handover):
            raise InvalidInput("handover_time is HH:MM", field="handover_time")
        try:
            starts_on = date.fromisoformat(spec["starts_on"]) if isinstance(spec.get("starts_on"), str) else None
        except ValueError:
            starts_on = None
        if starts_on is None:
            raise InvalidInput("starts_on is a date, YYYY-MM-DD", field="starts_on")
        members = spec.get("members")
        if (not isinstance(members, list | tuple) or not members or len(members) > 200
                or any(not isinstance(m, str) or not _PERSON.match(m) for m in members)):
            raise InvalidInput("members is a non-empty list of people (subject ids)", field="members")
        if len(set(members)) != len(members):
            raise InvalidInput("a person appears once in members", field="members")
        return cls(rota_id=rota_id, version=version, team=spec["team"], role=spec["role"], time_zone=zone,
                   handover_time=time.fromisoformat(handover), starts_on=starts_on, members=tuple(members))

    # --- who is on call ---------------------------------------------------------------------------------
    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def handover_at(self, week: int) -> datetime:
        """The instant shift `week` (0 = the first) begins."""
        day = self.starts_on + timedelta(days=7 * week)
        return datetime.combine(day, self.handover_time, self.zone)

    def week_at(self, instant: datetime) -> int | None:
        """The index of the shift running at `instant`, or None before the rota starts."""
        if instant < self.handover_at(0):
            return None
        local_day = instant.astimezone(self.zone).date()
        week = (local_day - self.starts_on).days // 7
        while self.handover_at(week) > instant:
            week -= 1
        while self.handover_at(week + 1) <= instant:
            week += 1
        return week

    def on_call(self, instant: datetime) -> str | None:
        for o in self.overrides:
            if o.start <= instant < o.end:
                return o.person
        week = self.week_at(instant)
        return None if week is None else self.members[week % len(self.members)]

    def shifts(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Who is on call over [start, end): consecutive spans, split at hand-overs and overrides."""
        cuts = {start, end}
        week = self.week_at(start)
        week = 0 if week is None else week + 1
        while (at := self.handover_at(week)) < end:
            cuts.add(at)
            week += 1
        cuts.update(t for o in self.overrides for t in (o.start, o.end) if start < t < end)
        bounds = sorted(cuts)
        spans: list[dict[str, Any]] = []
        for a, b in zip(bounds, bounds[1:], strict=False):
            person = self.on_call(a)
            override = next((o.override_id for o in self.overrides if o.start <= a < o.end), None)
            if spans and spans[-1]["person"] == person and spans[-1]["override_id"] == override:
                spans[-1]["end"] = b
            else:
                spans.append({"start": a, "end": b, "person": person, "override_id": override})
        return spans


def evolve(state: Rota | None, event: DomainEvent) -> Rota:
    match event:
        case ev.RotaDefined():
            rota = Rota.from_spec(event.rota_id, event.version, event.rota)
            return replace(rota, overrides=state.overrides) if state is not None else rota
        case ev.RotaOverrideAdded():
            assert state is not None
            return replace(state, overrides=(*state.overrides, Override(event.override_id, event.person, event.start,
                                                                        event.end)))
    raise Conflict("this id is not a rota", field="rota_id", code="id_taken")


def define(state: Rota | None, command: Any, now: Any, by: str) -> list[DomainEvent]:
    rota = Rota.from_spec(command.rota_id, (state.version if state else 0) + 1, command.spec())
    return [ev.RotaDefined(rota_id=rota.rota_id, version=rota.version, rota=rota.to_spec(), at=now, by=by)]


def add_override(state: Rota | None, command: Any, now: Any, by: str) -> list[DomainEvent]:
    if state is None:
        raise InvalidTransition("define the rota first", field="rota_id")
    if not isinstance(command.person, str) or not _PERSON.match(command.person):
        raise InvalidInput("person is a subject id", field="person")
    for field in ("start", "end"):
        if getattr(command, field).tzinfo is None:
            raise InvalidInput("give a time zone offset, e.g. 2026-01-31T09:00:00+08:00", field=field)
    if command.end <= command.start:
        raise InvalidInput("end must come after start", field="end")
    if command.end - command.start > timedelta(days=366):
        raise InvalidInput("an override lasts at most a year", field="end")
    clash = next((o for o in state.overrides if o.start < command.end and command.start < o.end), None)
    if clash is not None:
        raise Conflict(f"overlaps override {clash.override_id} ({clash.start.isoformat()} to {clash.end.isoformat()})",
                       field="start", code="overlapping_override")
    if any(o.override_id == command.override_id for o in state.overrides):
        raise Conflict(f"override {command.override_id} exists", field="override_id")
    return [ev.RotaOverrideAdded(rota_id=state.rota_id, override_id=command.override_id, person=command.person,
                                 start=command.start, end=command.end, reason=command.reason, at=now, by=by)]
