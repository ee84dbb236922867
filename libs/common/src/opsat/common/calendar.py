"""Business calendar: which days and hours count as working time, in one time zone.

Pure arithmetic shared by every service (SLA clocks, auto-close, stalled requests). Working hours
are wall-clock hours in the calendar's zone; all inputs must be timezone-aware and results come
back in the input's time zone. `default_calendar()` is China's, with the holidays and make-up days
shipped as data in `data/calendar_cn.txt`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from opsat.common.domain import InvalidInput

DEFAULT_TIME_ZONE = "Asia/Shanghai"
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class BusinessCalendar:
    """Working days and hours. Weekdays use `date.weekday()` numbers: 0 = Monday ... 6 = Sunday.

    `makeup_workdays` (调休) are otherwise non-working days that are worked; `always_open` means 24x7.
    """

    time_zone: str = DEFAULT_TIME_ZONE
    working_weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})
    work_start: time = time(9, 0)
    work_end: time = time(18, 0)
    holidays: frozenset[date] = frozenset()
    makeup_workdays: frozenset[date] = frozenset()
    always_open: bool = False

    def __post_init__(self) -> None:
        # Accept any iterable (sets, lists) but store frozensets, so calendars stay hashable.
        for name in ("working_weekdays", "holidays", "makeup_workdays"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))
        _load_zone(self.time_zone)
        if not self.working_weekdays <= set(range(7)):
            raise ValueError("working_weekdays must be numbers 0 (Monday) to 6 (Sunday)")
        if not self.working_weekdays and not self.always_open:
            raise ValueError("a calendar needs at least one working weekday")
        if self.work_start.tzinfo or self.work_end.tzinfo:
            raise ValueError("working hours are local times without a time zone")
        if self.work_start >= self.work_end:
            raise ValueError("work_start must be before work_end")
        both = self.holidays & self.makeup_workdays
        if both:
            raise ValueError(f"a day cannot be both holiday and makeup workday: {sorted(both)[0]}")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def local_date(self, moment: datetime) -> date:
        """The calendar date of `moment` in this calendar's time zone."""
        return _local(moment, self.zone, "moment").date()

    def is_working_day(self, day: date) -> bool:
        """A datetime is first converted to this calendar's local date."""
        if isinstance(day, datetime):
            day = self.local_date(day)
        if self.always_open or day in self.makeup_workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() in self.working_weekdays

    def add_business_days(self, start: datetime, days: int) -> datetime:
        """The same local time of day, `days` working days later (non-working days are skipped)."""
        if days < 0:
            raise ValueError("days must not be negative")
        local = _local(start, self.zone, "start")
        day, counted = local.date(), 0
        while counted < days:
            day += _ONE_DAY
            if self.is_working_day(day):
                counted += 1
        return self._back(datetime.combine(day, local.time()), start)

    def add_business_time(self, start: datetime, duration: timedelta) -> datetime:
        """The moment when `duration` of working time has passed since `start`.

        Time outside working hours does not count, so the result always lies within working hours
        (a deadline may fall exactly on closing time).
        """
        if duration < timedelta(0):
            raise ValueError("duration must not be negative")
        if self.always_open:
            # Elapsed time, not wall-clock time: a DST change must not add or lose an hour.
            return (_utc(start, "start") + duration).astimezone(start.tzinfo)
        cursor = _local(start, self.zone, "start").replace(tzinfo=None)
        remaining = duration
        while True:
            opens, closes = self._hours(cursor.date())
            if opens is not None and cursor < closes:
                begin = max(cursor, opens)
                if remaining <= closes - begin:
                    return self._back(begin + remaining, start)
                remaining -= closes - begin
            cursor = datetime.combine(cursor.date() + _ONE_DAY, time())

    def business_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Working time from `a` to `b`; negative when `b` is before `a`, like a subtraction."""
        if _utc(b, "b") < _utc(a, "a"):
            return -self.business_time_between(b, a)
        if self.always_open:
            return _utc(b, "b") - _utc(a, "a")
        lo = _local(a, self.zone, "a").replace(tzinfo=None)
        hi = _local(b, self.zone, "b").replace(tzinfo=None)
        total, day = timedelta(0), lo.date()
        while day <= hi.date():
            opens, closes = self._hours(day)
            if opens is not None:
                total += max(timedelta(0), min(closes, hi) - max(opens, lo))
            day += _ONE_DAY
        return total

    def _hours(self, day: date) -> tuple[datetime, datetime] | tuple[None, None]:
        """Opening and closing wall-clock times of `day`, or (None, None) on a non-working day."""
        if not self.is_working_day(day):
            return None, None
        return datetime.combine(day, self.work_start), datetime.combine(day, self.work_end)

    def _back(self, local_naive: datetime, like: datetime) -> datetime:
        """A local wall-clock time of this calendar, expressed in the time zone of `like`."""
        return local_naive.replace(tzinfo=self.zone).astimezone(like.tzinfo)

    # --- configuration (JSON-like mappings) ---------------------------------------------------

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> BusinessCalendar:
        """Build from configuration such as
        {"time_zone": "Asia/Shanghai", "working_weekdays": ["mon", ..., "fri"], "work_start": "09:00",
         "work_end": "18:00", "holidays": ["2025-10-01"], "makeup_workdays": ["2025-09-28"], "always_open": false}.
        Missing keys keep the defaults of `default_calendar()`; in particular a configuration that
        names neither `holidays` nor `makeup_workdays` gets the shipped Chinese ones (give
        `"holidays": []` for none). The two lists go together: naming one leaves the other empty.
        Bad values raise InvalidInput naming the key.
        """
        if not isinstance(data, Mapping):
            raise InvalidInput("calendar configuration must be an object")
        unknown = set(data) - _CONFIG_KEYS
        if unknown:
            raise InvalidInput(f"unknown calendar setting {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
        kwargs: dict[str, Any] = {}
        for key, parse in _PARSERS.items():
            if key in data:
                kwargs[key] = parse(data[key], key)
        if "holidays" not in data and "makeup_workdays" not in data:
            shipped = default_calendar()
            kwargs["holidays"], kwargs["makeup_workdays"] = shipped.holidays, shipped.makeup_workdays
        try:
            return cls(**kwargs)
        except ValueError as error:
            raise InvalidInput(str(error)) from error

    def to_mapping(self) -> dict[str, Any]:
        """The inverse of `from_mapping`, JSON-ready."""
        return {
            "time_zone": self.time_zone,
            "working_weekdays": [WEEKDAY_NAMES[d] for d in sorted(self.working_weekdays)],
            "work_start": self.work_start.strftime("%H:%M"),
            "work_end": self.work_end.strftime("%H:%M"),
            "holidays": [d.isoformat() for d in sorted(self.holidays)],
            "makeup_workdays": [d.isoformat() for d in sorted(self.makeup_workdays)],
            "always_open": self.always_open,
        }


# --- the shipped default: China's statutory holidays and make-up working days --------------------

SHIPPED_CALENDAR_DATA = "data/calendar_cn.txt"  # inside the opsat.common package
_DAY_KINDS = ("holiday", "workday")


class CalendarDataError(ValueError):
    """A line of a holiday data file that cannot be used; the message names the line."""

    def __init__(self, source: str, line_number: int, line: str, reason: str) -> None:
        line = line.strip()
        super().__init__(f"{source}, line {line_number}: {reason}: {line!r}")
        self.source = source
        self.line_number = line_number
        self.line = line
        self.reason = reason


def parse_calendar_days(text: str, source: str = "<calendar data>") -> tuple[frozenset[date], frozenset[date]]:
    """(holidays, make-up workdays) from lines `YYYY-MM-DD holiday|workday  # comment`.

    Refused, naming the line: a malformed date, an unknown kind, a day listed twice (in particular
    both as holiday and as workday), and a make-up workday that is not a Saturday or Sunday (it
    would change nothing, so it is a typo).
    """
    seen: dict[date, tuple[int, str]] = {}
    kinds: dict[str, set[date]] = {kind: set() for kind in _DAY_KINDS}
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2:
            raise CalendarDataError(source, number, raw, "expected 'YYYY-MM-DD holiday|workday'")
        day_text, kind = fields
        day = _iso_date(day_text)
        if day is None:
            raise CalendarDataError(source, number, raw, f"{day_text!r} is not a date YYYY-MM-DD")
        if kind not in kinds:
            raise CalendarDataError(source, number, raw, f"unknown kind {kind!r}, expected holiday or workday")
        if day in seen:
            first_line, first_kind = seen[day]
            raise CalendarDataError(source, number, raw,
                                    f"{day} is already listed as {first_kind} on line {first_line}")
        if kind == "workday" and day.weekday() < 5:
            weekday = WEEKDAY_NAMES[day.weekday()]
            raise CalendarDataError(source, number, raw,
                                    f"a make-up workday must be a Saturday or Sunday, not {weekday}")
        seen[day] = (number, kind)
        kinds[kind].add(day)
    return frozenset(kinds["holiday"]), frozenset(kinds["workday"])


def _iso_date(text: str) -> date | None:
    # fromisoformat alone would also take '20240101' and week dates; the file uses one spelling.
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


@functools.cache
def default_calendar() -> BusinessCalendar:
    """DOMAIN.md's default: Asia/Shanghai, Mon-Fri 09:00-18:00, with China's shipped holidays and
    make-up days (parsed once per process; the calendar is immutable, so sharing it is safe)."""
    data = resources.files("opsat.common").joinpath(SHIPPED_CALENDAR_DATA)
    holidays, makeup_workdays = parse_calendar_days(data.read_text(encoding="utf-8"), SHIPPED_CALENDAR_DATA)
    return BusinessCalendar(holidays=holidays, makeup_workdays=makeup_workdays)


def _load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as error:
        raise ValueError(f"unknown time zone {name!r}") from error


def _utc(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be a datetime")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment.astimezone(UTC)


def _local(moment: datetime, zone: ZoneInfo, name: str) -> datetime:
    return _utc(moment, name).astimezone(zone)


# --- parsers for from_mapping: each takes (value, key) and raises InvalidInput(field=key) ----------

def _parse_zone(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput("time zone must be a name such as 'Asia/Shanghai'", field=key)
    try:
        _load_zone(value)
    except ValueError as error:
        raise InvalidInput(str(error), field=key) from error
    return value


def _parse_weekdays(value: Any, key: str) -> frozenset[int]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidInput("working_weekdays must be a list such as ['mon', 'tue']", field=key)
    days = []
    for name in value:
        if not isinstance(name, str) or name.lower() not in WEEKDAY_NAMES:
            raise InvalidInput(f"{name!r} is not one of {', '.join(WEEKDAY_NAMES)}", field=key)
        days.append(WEEKDAY_NAMES.index(name.lower()))
    return frozenset(days)


_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _parse_clock(value: Any, key: str) -> time:
    match = _CLOCK.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidInput(f"{key} must be a time 'HH:MM'", field=key)
    return time(int(match.group(1)), int(match.group(2)))


def _parse_dates(value: Any, key: str) -> frozenset[date]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidInput(f"{key} must be a list of dates 'YYYY-MM-DD'", field=key)
    days = set()
    for item in value:
        try:
            days.add(date.fromisoformat(item))
        except (TypeError, ValueError) as error:
            raise InvalidInput(f"{item!r} is not a date 'YYYY-MM-DD'", field=key) from error
    return frozenset(days)


def _parse_flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{key} must be true or false", field=key)
    return value


_PARSERS = {
    "time_zone": _parse_zone,
    "working_weekdays": _parse_weekdays,
    "work_start": _parse_clock,
    "work_end": _parse_clock,
    "holidays": _parse_dates,
    "makeup_workdays": _parse_dates,
    "always_open": _parse_flag,
}
_CONFIG_KEYS = frozenset(_PARSERS)


def business_days_from_working_time(calendar: BusinessCalendar, start: datetime, days: int) -> datetime:
    """`days` working days after the first working moment at or after `start`, at that moment's time of day.

    Unlike `add_business_days`, the result lies in working hours (closing time included) and never moves
    backwards as `start` moves forwards: a start after closing, before opening or on a non-working day counts
    from the next opening. With `always_open` every moment is working time.
    """
    if calendar.always_open:
        return calendar.add_business_days(start, days)
    local = _local(start, calendar.zone, "start").replace(tzinfo=None)
    day = local.date()
    opens, closes = calendar._hours(day)
    if opens is None or local > closes:
        day += _ONE_DAY
        while not calendar.is_working_day(day):
            day += _ONE_DAY
        local = datetime.combine(day, calendar.work_start)
    elif local < opens:
        local = opens
    return calendar.add_business_days(calendar._back(local, start), days)
