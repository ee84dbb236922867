"""BusinessCalendar: working days, business-day and business-hour arithmetic."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from opsat.common.calendar import BusinessCalendar, default_calendar
from opsat.common.domain import InvalidInput

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")

# The 2025 National Day holiday in China: 1-8 October off, Sunday 28 September and Saturday 11 October worked.
NATIONAL_DAY = frozenset(date(2025, 10, d) for d in range(1, 9))
MAKEUP = frozenset({date(2025, 9, 28), date(2025, 10, 11)})
CHINA_2025 = BusinessCalendar(holidays=NATIONAL_DAY, makeup_workdays=MAKEUP)
PLAIN = BusinessCalendar()
ALWAYS = BusinessCalendar(always_open=True)


def sh(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=SHANGHAI)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


# --- working days ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2025, 9, 26), True),  # Friday
        (date(2025, 9, 27), False),  # Saturday
        (date(2025, 9, 28), True),  # Sunday, but a makeup workday
        (date(2025, 10, 1), False),  # Wednesday, but a holiday
        (date(2025, 10, 9), True),  # Thursday after the holiday
        (date(2025, 10, 11), True),  # Saturday, makeup workday
        (date(2025, 10, 12), False),  # Sunday
    ],
)
def test_working_days_follow_weekdays_holidays_and_makeup_days(day: date, working: bool) -> None:
    assert CHINA_2025.is_working_day(day) is working


def test_defaults_are_shanghai_monday_to_friday_nine_to_six() -> None:
    assert PLAIN.time_zone == "Asia/Shanghai"
    assert PLAIN.working_weekdays == frozenset({0, 1, 2, 3, 4})
    assert (PLAIN.work_start, PLAIN.work_end) == (time(9), time(18))


def test_a_datetime_counts_on_its_local_date() -> None:
    # 20:00 UTC on Friday is already Saturday 04:00 in Shanghai.
    friday_evening_utc = datetime(2025, 9, 26, 20, 0, tzinfo=UTC)
    assert PLAIN.is_working_day(friday_evening_utc) is False
    assert PLAIN.local_date(friday_evening_utc) == date(2025, 9, 27)


# --- add_business_days ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        (sh(9, 22), 0, sh(9, 22)),
        (sh(9, 22), 1, sh(9, 23)),
        (sh(9, 19, 20, 30), 1, sh(9, 22, 20, 30)),  # Friday evening → Monday, same time of day
        (sh(9, 20), 1, sh(9, 22)),  # from a Saturday, Monday is the first working day
        (sh(9, 26, 15), 1, sh(9, 28, 15)),  # Friday → the makeup Sunday
        (sh(9, 30, 15), 1, sh(10, 9, 15)),  # over the whole holiday week
        (sh(9, 30, 15), 3, sh(10, 11, 15)),  # Thu, Fri, makeup Saturday
    ],
)
def test_add_business_days(start: datetime, days: int, expected: datetime) -> None:
    assert CHINA_2025.add_business_days(start, days) == expected


def test_add_business_days_rejects_negative_days() -> None:
    with pytest.raises(ValueError):
        PLAIN.add_business_days(sh(9, 22), -1)


def test_dst_free_zone_keeps_its_offset_when_europe_changes_clocks() -> None:
    # Europe moved its clocks on Sunday 30 March 2025; Shanghai has no DST, so a business day is 24 hours.
    start = datetime(2025, 3, 28, 10, 0, tzinfo=SHANGHAI)
    due = PLAIN.add_business_days(start, 1)
    assert due == datetime(2025, 3, 31, 10, 0, tzinfo=SHANGHAI)
    assert due - start == timedelta(days=3)
    assert due.utcoffset() == start.utcoffset() == hours(8)


def test_zone_with_dst_keeps_the_local_time_of_day() -> None:
    berlin = BusinessCalendar(time_zone="Europe/Berlin")
    start = datetime(2025, 3, 28, 10, 0, tzinfo=BERLIN)  # CET, +01:00
    due = berlin.add_business_days(start, 1)
    assert due.replace(tzinfo=None) == datetime(2025, 3, 31, 10, 0)  # CEST, +02:00
    assert due.utcoffset() == hours(2)
    # Python subtracts same-zone datetimes by wall clock; the elapsed time is one hour shorter.
    assert due.astimezone(UTC) - start.astimezone(UTC) == timedelta(days=3) - hours(1)


def test_results_come_back_in_the_time_zone_of_the_input() -> None:
    start = datetime(2025, 9, 22, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    due = PLAIN.add_business_time(start, hours(2))
    assert due == datetime(2025, 9, 22, 3, 0, tzinfo=UTC)
    assert due.tzinfo is UTC


# --- add_business_time / business_time_between ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        (sh(9, 22, 10), hours(2), sh(9, 22, 12)),
        (sh(9, 22, 7), hours(1), sh(9, 22, 10)),  # before opening: the clock starts at 09:00
        (sh(9, 22, 9), hours(9), sh(9, 22, 18)),  # a full day ends exactly at closing time
        (sh(9, 22, 17), hours(2), sh(9, 23, 10)),  # overnight: 1 h today, 1 h tomorrow
        (sh(9, 22, 19), hours(1), sh(9, 23, 10)),  # after closing: nothing counts until tomorrow
        (sh(9, 19, 17, 30), hours(1), sh(9, 22, 9, 30)),  # Friday evening → Monday morning
        (sh(9, 26, 17), hours(2), sh(9, 28, 10)),  # Friday → the makeup Sunday
        (sh(9, 30, 17), hours(2), sh(10, 9, 10)),  # over the holiday week
        (sh(9, 22, 10), hours(27), sh(9, 25, 10)),  # three business days of nine hours
    ],
)
def test_add_business_time(start: datetime, duration: timedelta, expected: datetime) -> None:
    assert CHINA_2025.add_business_time(start, duration) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (sh(9, 22, 10), sh(9, 22, 12), hours(2)),
        (sh(9, 22, 17), sh(9, 23, 10), hours(2)),  # overnight
        (sh(9, 27, 10), sh(9, 27, 16), hours(0)),  # a Saturday
        (sh(9, 26, 8), sh(9, 29, 20), hours(18 + 9)),  # Fri + makeup Sun + Mon (Sat is off)
        (sh(9, 30, 17), sh(10, 9, 10), hours(2)),  # holiday week counts nothing
        (sh(9, 22, 12), sh(9, 22, 10), -hours(2)),  # reversed: negative, like a subtraction
    ],
)
def test_business_time_between(a: datetime, b: datetime, expected: timedelta) -> None:
    assert CHINA_2025.business_time_between(a, b) == expected


def test_add_and_between_are_inverse() -> None:
    starts = [sh(9, 19, 8) + hours(h) for h in range(0, 24 * 14, 5)]
    durations = [hours(0.5), hours(4), hours(9), hours(13), hours(50)]
    for start in starts:
        for duration in durations:
            due = CHINA_2025.add_business_time(start, duration)
            assert CHINA_2025.business_time_between(start, due) == duration, (start, duration)


def test_add_business_time_rejects_negative_duration() -> None:
    with pytest.raises(ValueError):
        PLAIN.add_business_time(sh(9, 22), -hours(1))


# --- 24x7 -----------------------------------------------------------------------------------------


def test_always_open_calendar_counts_every_hour_and_day() -> None:
    saturday_night = sh(9, 27, 23)
    assert ALWAYS.is_working_day(date(2025, 9, 27))
    assert ALWAYS.add_business_time(saturday_night, hours(2)) == sh(9, 28, 1)
    assert ALWAYS.business_time_between(saturday_night, sh(9, 29, 23)) == hours(48)
    assert ALWAYS.add_business_days(saturday_night, 2) == sh(9, 29, 23)


def test_always_open_ignores_holidays() -> None:
    calendar = BusinessCalendar(always_open=True, holidays=NATIONAL_DAY)
    assert calendar.is_working_day(date(2025, 10, 1))


def test_always_open_adds_elapsed_time_across_a_dst_change() -> None:
    calendar = BusinessCalendar(time_zone="Europe/Berlin", always_open=True)
    start = datetime(2025, 3, 30, 1, 0, tzinfo=BERLIN)
    due = calendar.add_business_time(start, hours(2))
    assert due.astimezone(UTC) - start.astimezone(UTC) == hours(2)
    assert due.replace(tzinfo=None) == datetime(2025, 3, 30, 4, 0)  # 02:00 → 03:00 was skipped
    assert calendar.business_time_between(start, due) == hours(2)


# --- input checks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda cal, naive: cal.add_business_days(naive, 1),
        lambda cal, naive: cal.add_business_time(naive, hours(1)),
        lambda cal, naive: cal.business_time_between(naive, sh(9, 22)),
        lambda cal, naive: cal.business_time_between(sh(9, 22), naive),
        lambda cal, naive: cal.is_working_day(naive),
    ],
)
@pytest.mark.parametrize("calendar", [PLAIN, ALWAYS])
def test_naive_datetimes_are_rejected(call, calendar: BusinessCalendar) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        call(calendar, datetime(2025, 9, 22, 10, 0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"time_zone": "Mars/Olympus_Mons"},
        {"working_weekdays": frozenset()},
        {"working_weekdays": frozenset({7})},
        {"work_start": time(18), "work_end": time(9)},
        {"work_start": time(9), "work_end": time(9)},
        {"holidays": {date(2025, 9, 28)}, "makeup_workdays": {date(2025, 9, 28)}},
    ],
)
def test_inconsistent_calendars_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        BusinessCalendar(**kwargs)


def test_sets_are_stored_as_frozensets() -> None:
    calendar = BusinessCalendar(holidays={date(2025, 10, 1)}, working_weekdays=[0, 1, 2])
    assert calendar.holidays == frozenset({date(2025, 10, 1)})
    assert isinstance(calendar.working_weekdays, frozenset)
    hash(calendar)


# --- configuration ---------------------------------------------------------------------------------


def test_from_mapping_round_trips() -> None:
    config = {
        "time_zone": "Asia/Shanghai",
        "working_weekdays": ["mon", "tue", "wed", "thu", "fri"],
        "work_start": "08:30",
        "work_end": "17:30",
        "holidays": ["2025-10-01", "2025-10-02"],
        "makeup_workdays": ["2025-09-28"],
        "always_open": False,
    }
    calendar = BusinessCalendar.from_mapping(config)
    assert calendar.work_start == time(8, 30)
    assert calendar.makeup_workdays == frozenset({date(2025, 9, 28)})
    assert calendar.to_mapping() == config
    assert BusinessCalendar.from_mapping({}) == default_calendar()


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"time_zone": "Nowhere/City"}, "time_zone"),
        ({"working_weekdays": ["monday"]}, "working_weekdays"),
        ({"working_weekdays": "mon"}, "working_weekdays"),
        ({"work_start": "9am"}, "work_start"),
        ({"work_end": "24:00"}, "work_end"),
        ({"holidays": ["2025-13-01"]}, "holidays"),
        ({"always_open": "yes"}, "always_open"),
        ({"timezone": "Asia/Shanghai"}, "timezone"),
        ({"work_start": "18:00", "work_end": "09:00"}, None),
    ],
)
def test_from_mapping_rejects_bad_configuration(config: dict, field: str | None) -> None:
    with pytest.raises(InvalidInput) as raised:
        BusinessCalendar.from_mapping(config)
    assert raised.value.field == field
