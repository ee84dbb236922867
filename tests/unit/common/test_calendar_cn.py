"""The shipped default calendar: China's statutory holidays and 调休 make-up days, 2024-2026.

The oracle is the `chinese-calendar` package, maintained independently from the same State Council
notices; a disagreement on any single day fails the test.
"""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest

from opsat.common.calendar import BusinessCalendar, CalendarDataError, default_calendar, parse_calendar_days

SHANGHAI = ZoneInfo("Asia/Shanghai")
FIRST, LAST = date(2024, 1, 1), date(2026, 12, 31)


def every_day(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def test_the_oracle_knows_every_year_compared() -> None:
    # chinese-calendar raises NotImplementedError for a year it has no notice for.
    for year in (2024, 2025, 2026):
        chinese_calendar.is_workday(date(year, 12, 31))


def test_every_day_of_2024_to_2026_agrees_with_the_independent_oracle() -> None:
    calendar = default_calendar()
    disagreements = [
        (day.isoformat(), "ours", calendar.is_working_day(day), "oracle", chinese_calendar.is_workday(day))
        for day in every_day(FIRST, LAST)
        if calendar.is_working_day(day) is not chinese_calendar.is_workday(day)
    ]
    assert disagreements == []


def test_every_listed_day_changes_the_ordinary_week() -> None:
    calendar = default_calendar()
    assert all(day.weekday() >= 5 for day in calendar.makeup_workdays)
    assert all(not calendar.is_working_day(day) for day in calendar.holidays)
    assert {day.year for day in calendar.holidays | calendar.makeup_workdays} == {2024, 2025, 2026}


def test_default_is_shanghai_monday_to_friday_nine_to_six_with_the_shipped_days() -> None:
    calendar = default_calendar()
    assert calendar.time_zone == "Asia/Shanghai"
    assert calendar.working_weekdays == frozenset({0, 1, 2, 3, 4})
    assert (calendar.work_start, calendar.work_end) == (time(9), time(18))
    assert not calendar.always_open
    assert date(2026, 10, 1) in calendar.holidays  # National Day, a Thursday
    assert date(2026, 10, 10) in calendar.makeup_workdays  # a Saturday worked
    assert default_calendar() is calendar  # parsed once


def test_resolved_on_2026_09_30_auto_closes_on_a_working_day_after_the_holiday() -> None:
    resolved = datetime(2026, 9, 30, 16, 0, tzinfo=SHANGHAI)  # Wednesday, the eve of National Day
    due = default_calendar().add_business_days(resolved, 3)
    # 1-7 October off; Thursday 8, Friday 9, and Saturday 10 October (a make-up workday) count.
    assert due == datetime(2026, 10, 10, 16, 0, tzinfo=SHANGHAI)
    assert chinese_calendar.is_workday(due.date())


def test_configuration_without_holidays_gets_the_shipped_ones_and_can_opt_out() -> None:
    shipped = default_calendar()
    assert BusinessCalendar.from_mapping({"work_start": "08:30"}).holidays == shipped.holidays
    assert BusinessCalendar.from_mapping({"work_start": "08:30"}).makeup_workdays == shipped.makeup_workdays
    none = BusinessCalendar.from_mapping({"holidays": []})
    assert none.holidays == none.makeup_workdays == frozenset()
    own = BusinessCalendar.from_mapping({"holidays": ["2026-12-24"]})
    assert own.holidays == {date(2026, 12, 24)} and own.makeup_workdays == frozenset()
    assert BusinessCalendar.from_mapping(shipped.to_mapping()) == shipped


# --- the loader refuses bad data, naming the line -----------------------------------------------------


def test_parses_days_comments_and_blank_lines() -> None:
    text = "# header\n\n2026-10-01  holiday  # 国庆节\n2026-10-10 workday\n   \n"
    assert parse_calendar_days(text) == (frozenset({date(2026, 10, 1)}), frozenset({date(2026, 10, 10)}))


def test_a_day_listed_as_holiday_and_as_workday_is_refused_naming_the_line() -> None:
    text = "# header\n2026-10-03  holiday  # 国庆节\n2026-10-04  holiday\n2026-10-03  workday  # typo\n"
    with pytest.raises(CalendarDataError) as raised:
        parse_calendar_days(text, "calendar_cn.txt")
    assert raised.value.line_number == 4
    assert raised.value.line == "2026-10-03  workday  # typo"
    assert "calendar_cn.txt, line 4" in str(raised.value)
    assert "2026-10-03  workday  # typo" in str(raised.value)
    assert "already listed as holiday on line 2" in str(raised.value)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("2026-02-30  holiday  # no such day", "is not a date"),
        ("2026-2-3  holiday", "is not a date"),
        ("20260203  holiday", "is not a date"),
        ("2026-10-01  holyday", "unknown kind 'holyday'"),
        ("2026-10-01", "expected 'YYYY-MM-DD holiday|workday'"),
        ("2026-10-01 holiday extra", "expected 'YYYY-MM-DD holiday|workday'"),
        ("2026-10-08  workday  # a Thursday", "must be a Saturday or Sunday"),
    ],
)
def test_malformed_lines_are_refused_naming_the_line(line: str, reason: str) -> None:
    with pytest.raises(CalendarDataError) as raised:
        parse_calendar_days(f"2026-01-01 holiday\n\n{line}\n2026-01-02 holiday\n")
    assert raised.value.line_number == 3
    assert raised.value.line == line
    assert reason in str(raised.value) and line in str(raised.value) and "line 3" in str(raised.value)


def test_a_repeated_line_is_refused() -> None:
    with pytest.raises(CalendarDataError, match="line 2: 2026-10-01 is already listed as holiday on line 1"):
        parse_calendar_days("2026-10-01 holiday\n2026-10-01 holiday\n")
