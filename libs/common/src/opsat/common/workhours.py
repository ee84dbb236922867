"""Working calendars with several shifts a day (09:00-12:00 and 13:30-18:00), as configuration.

`BusinessCalendar` (opsat.common.calendar) has one opening and one closing time; a `WorkCalendar` has a
list of shifts per weekday, holidays, make-up working days (调休, worked with `makeup_hours`) or 24x7.
It is built from a JSON-like spec (`from_spec`, refusing bad input with `InvalidInput` naming the field)
and does business-time arithmetic on UTC instants.

Both `add` and `between` walk the same sequence of working intervals, each a shift turned into UTC
instants, sorted and made disjoint (a shift that a DST change makes overlap its predecessor is cut);
so measuring what was added gives back exactly the amount, in any time zone.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from opsat.common.calendar import WEEKDAY_NAMES, BusinessCalendar, default_calendar
from opsat.common.domain import InvalidInput

Shift = tuple[int, int]  # minutes since local midnight, [start, end), end <= 1440
_DAY = timedelta(days=1)
_MAX_DAYS = 3700  # a calendar with no working time within ten years is a configuration error
_MAX_SUMS = 20_000  # remembered results of `add` per calendar
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")
SPEC_KEYS = frozenset({"time_zone", "always_open", "hours", "holidays", "makeup_workdays", "makeup_hours"})


@dataclass(frozen=True)
class WorkCalendar:
    time_zone: str
    hours: tuple[tuple[Shift, ...], ...]  # 7 entries, index = date.weekday()
    holidays: frozenset[date] = frozenset()
    makeup_workdays: frozenset[date] = frozenset()
    makeup_hours: tuple[Shift, ...] = ()
    always_open: bool = False

    @functools.cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    # --- configuration --------------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> WorkCalendar:
        if not isinstance(spec, Mapping):
            raise InvalidInput("a calendar must be an object", field="calendar")
        for key in spec:
            if key not in SPEC_KEYS:
                raise InvalidInput(f"unknown calendar setting {key!r}", field=str(key))
        zone = spec.get("time_zone", "Asia/Shanghai")
        try:
            if not isinstance(zone, str):
                raise TypeError
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise InvalidInput(f"unknown time zone {zone!r}", field="time_zone") from None
        always_open = spec.get("always_open", False)
        if not isinstance(always_open, bool):
            raise InvalidInput("always_open must be true or false", field="always_open")
        raw_hours = spec.get("hours") or {}
        if not isinstance(raw_hours, Mapping):
            raise InvalidInput("hours must map weekdays (mon..sun) to lists of shifts", field="hours")
        hours: list[tuple[Shift, ...]] = [()] * 7
        for name, shifts in raw_hours.items():
            if name not in WEEKDAY_NAMES:
                raise InvalidInput(f"{name!r} is not one of {', '.join(WEEKDAY_NAMES)}", field=f"hours.{name}")
            hours[WEEKDAY_NAMES.index(name)] = _shifts(shifts, f"hours.{name}")
        if not always_open and not any(hours):
            raise InvalidInput("a calendar needs working hours on at least one weekday (or always_open)",
                               field="hours")
        holidays = _dates(spec.get("holidays", ()), "holidays")
        makeup = _dates(spec.get("makeup_workdays", ()), "makeup_workdays")
        both = holidays & makeup
        if both:
            raise InvalidInput(f"{min(both)} cannot be both a holiday and a make-up workday", field="makeup_workdays")
        if spec.get("makeup_hours") is not None:
            makeup_hours = _shifts(spec["makeup_hours"], "makeup_hours")
        else:  # a make-up day is worked like the first weekday that has hours
            makeup_hours = next((h for h in hours if h), ())
        return cls(time_zone=zone, hours=tuple(hours), holidays=holidays, makeup_workdays=makeup,
                   makeup_hours=makeup_hours, always_open=always_open)

    def to_spec(self) -> dict[str, Any]:
        return {
            "time_zone": self.time_zone,
            "always_open": self.always_open,
            "hours": {WEEKDAY_NAMES[d]: [[_hhmm(s), _hhmm(e)] for s, e in shifts]
                      for d, shifts in enumerate(self.hours) if shifts},
            "holidays": [d.isoformat() for d in sorted(self.holidays)],
            "makeup_workdays": [d.isoformat() for d in sorted(self.makeup_workdays)],
            "makeup_hours": [[_hhmm(s), _hhmm(e)] for s, e in self.makeup_hours],
        }

    @classmethod
    def from_business_calendar(cls, calendar: BusinessCalendar) -> WorkCalendar:
        shift = (calendar.work_start.hour * 60 + calendar.work_start.minute,
                 calendar.work_end.hour * 60 + calendar.work_end.minute)
        hours = tuple((shift,) if d in calendar.working_weekdays else () for d in range(7))
        return cls(time_zone=calendar.time_zone, hours=hours, holidays=calendar.holidays,
                   makeup_workdays=calendar.makeup_workdays, makeup_hours=(shift,),
                   always_open=calendar.always_open)

    def to_business_calendar(self) -> BusinessCalendar:
        """The same days (weekdays with hours, holidays, make-up days) as a one-shift `BusinessCalendar`, open
        from the earliest start to the latest end of a working weekday: for counting business days (auto-close),
        where a lunch break or a shorter day does not matter."""
        shifts = [shift for day in self.hours for shift in day]
        if self.always_open or not shifts:
            return BusinessCalendar(time_zone=self.time_zone, holidays=self.holidays,
                                    makeup_workdays=self.makeup_workdays, always_open=True)
        start, end = min(s for s, _ in shifts), max(e for _, e in shifts)
        return BusinessCalendar(time_zone=self.time_zone, working_weekdays={d for d in range(7) if self.hours[d]},
                                work_start=time(start // 60, start % 60),
                                work_end=time(23, 59, 59, 999999) if end == 1440 else time(end // 60, end % 60),
                                holidays=self.holidays, makeup_workdays=self.makeup_workdays)

    # --- arithmetic -----------------------------------------------------------------------------------
    def add(self, start: datetime, amount: timedelta) -> datetime:
        """The first instant at which `amount` of working time has passed since `start` (UTC)."""
        key = (start, amount)  # equal instants in any zone are one key: the answer is in UTC either way
        found = self._sums.get(key)
        if found is None:
            found = self._add(_utc(start), amount)
            if len(self._sums) >= _MAX_SUMS:
                self._sums.clear()
            self._sums[key] = found
        return found

    @functools.cached_property
    def _sums(self) -> dict[tuple[datetime, timedelta], datetime]:
        return {}  # a clock asks for the same due times at each of its decisions and folds

    def _add(self, start: datetime, amount: timedelta) -> datetime:
        if amount < timedelta(0):
            raise ValueError("amount must not be negative")
        if self.always_open:
            return start + amount
        remaining = amount
        for opens, closes in self._intervals(self._local_date(start) - _DAY):
            if closes <= start:
                continue
            begin = max(opens, start)
            if remaining <= closes - begin:
                return begin + remaining
            remaining -= closes - begin
        raise AssertionError("unreachable: _intervals raises first")

    def between(self, a: datetime, b: datetime) -> timedelta:
        """Working time from `a` to `b`; negative when `b` is before `a`."""
        a, b = _utc(a), _utc(b)
        if b < a:
            return -self.between(b, a)
        if self.always_open:
            return b - a
        total = timedelta(0)
        for opens, closes in self._intervals(self._local_date(a) - _DAY):
            if opens >= b:
                break
            if closes > a:
                total += min(closes, b) - max(opens, a)
        return total

    def in_working_time(self, moment: datetime) -> bool:
        """Whether `moment` lies in a working interval (its closing instant included)."""
        moment = _utc(moment)
        if self.always_open:
            return True
        for opens, closes in self._intervals(self._local_date(moment) - _DAY):
            if opens > moment:
                return False
            if moment <= closes:
                return True
        return False

    def shifts_on(self, day: date) -> tuple[Shift, ...]:
        if day in self.makeup_workdays:
            return self.makeup_hours
        if day in self.holidays:
            return ()
        return self.hours[day.weekday()]

    def _local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    @functools.cached_property
    def _days(self) -> dict[date, tuple[tuple[datetime, datetime], ...]]:
        return {}  # a day's shifts as UTC instants: clocks ask for the same few days again and again

    def _shifts_utc(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        found = self._days.get(day)
        if found is None:
            midnight = datetime.combine(day, time())
            found = tuple(((midnight + timedelta(minutes=start)).replace(tzinfo=self.zone).astimezone(UTC),
                           (midnight + timedelta(minutes=end)).replace(tzinfo=self.zone).astimezone(UTC))
                          for start, end in self.shifts_on(day))
            if len(self._days) < _MAX_DAYS:
                self._days[day] = found
        return found

    def _intervals(self, first_day: date) -> Iterator[tuple[datetime, datetime]]:
        last_end: datetime | None = None
        day = first_day
        for _ in range(_MAX_DAYS):
            for opens, closes in self._shifts_utc(day):
                if last_end is not None and opens < last_end:
                    opens = last_end
                if closes > opens:
                    yield opens, closes
                    last_end = closes
            day += _DAY
        raise InvalidInput("the calendar has no working time within ten years", field="hours")


def shipped_calendar() -> WorkCalendar:
    """China's default (Asia/Shanghai, Mon-Fri 09:00-18:00, the shipped holidays and 调休 days)."""
    return WorkCalendar.from_business_calendar(default_calendar())


ALWAYS_OPEN = WorkCalendar(time_zone="UTC", hours=((),) * 7, always_open=True)


@functools.lru_cache(maxsize=256)
def _from_json(text: bytes) -> WorkCalendar:
    return WorkCalendar.from_spec(orjson.loads(text))


def calendar_from_spec(spec: Mapping[str, Any]) -> WorkCalendar:
    """`WorkCalendar.from_spec`, memoised: clocks rebuild the same few calendars on every load (keyed by the
    spec's canonical JSON; orjson, as the stdlib's encoder cost a tenth of a clock update)."""
    return _from_json(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS))


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("times must be timezone-aware")
    return moment.astimezone(UTC)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minutes(value: Any, field: str) -> int:
    if not isinstance(value, str) or not _HHMM.match(value):
        raise InvalidInput(f"{value!r} is not a time 'HH:MM' (00:00-24:00)", field=field)
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def _shifts(value: Any, field: str) -> tuple[Shift, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise InvalidInput("shifts must be a list of [start, end] pairs such as ['09:00', '12:00']", field=field)
    shifts = []
    for i, pair in enumerate(value):
        where = f"{field}[{i}]"
        if isinstance(pair, str) or not isinstance(pair, list | tuple) or len(pair) != 2:
            raise InvalidInput("a shift is a [start, end] pair such as ['09:00', '12:00']", field=where)
        start, end = _minutes(pair[0], where), _minutes(pair[1], where)
        if start >= end:
            raise InvalidInput(f"shift {pair[0]}-{pair[1]} ends before it starts", field=where)
        shifts.append((start, end))
    shifts.sort()
    for (s1, e1), (s2, _) in zip(shifts, shifts[1:], strict=False):
        if s2 < e1:
            raise InvalidInput(f"shifts {_hhmm(s1)}-{_hhmm(e1)} and {_hhmm(s2)} overlap", field=field)
    return tuple(shifts)


def _dates(value: Any, field: str) -> frozenset[date]:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise InvalidInput(f"{field} must be a list of dates 'YYYY-MM-DD'", field=field)
    days = set()
    for item in value:
        if isinstance(item, date):
            days.add(item)
            continue
        if not isinstance(item, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", item):
            raise InvalidInput(f"{item!r} is not a date 'YYYY-MM-DD'", field=field)
        try:
            days.add(date.fromisoformat(item))
        except ValueError:
            raise InvalidInput(f"{item!r} is not a date 'YYYY-MM-DD'", field=field) from None
    return frozenset(days)
