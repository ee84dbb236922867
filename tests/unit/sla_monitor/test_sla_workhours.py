"""Business calendars with split shifts: configuration refused with the field named, and the arithmetic's
laws checked by hypothesis (adding then measuring gives the amount back, results lie in working time,
monotone in the start), including a zone with DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opsat.common.domain import InvalidInput
from opsat.common.workhours import WorkCalendar, calendar_from_spec, shipped_calendar

SPLIT = {"time_zone": "Asia/Shanghai",
         "hours": {d: [["09:00", "12:00"], ["13:30", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
         "holidays": ["2027-01-01"], "makeup_workdays": ["2027-01-09"]}
# A DST zone whose shifts cover the changes (02:00 local on Sundays in March and November).
NEW_YORK = {"time_zone": "America/New_York",
            "hours": {"sun": [["00:30", "03:30"], ["20:00", "24:00"]], "mon": [["00:00", "06:00"], ["09:00", "17:00"]],
                      "sat": [["01:00", "02:30"]], "wed": [["09:00", "17:00"]]}}
CALENDARS = [calendar_from_spec(SPLIT), calendar_from_spec(NEW_YORK), shipped_calendar(),
             calendar_from_spec({"always_open": True})]
SH = WorkCalendar.from_spec(SPLIT).zone


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)


# --- configuration -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "field"), [
    ({"hours": {"mon": [["09:00", "12:00"], ["11:00", "18:00"]]}}, "hours.mon"),
    ({"hours": {"mon": [["18:00", "09:00"]]}}, "hours.mon[0]"),
    ({"hours": {"mon": [["09:00", "25:00"]]}}, "hours.mon[0]"),
    ({"hours": {"funday": [["09:00", "12:00"]]}}, "hours.funday"),
    ({"hours": {}}, "hours"),
    ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
    ({"holidays": ["2027-01-09"]}, "makeup_workdays"),
    ({"holidays": ["2027-02-30"]}, "holidays"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_calendars_are_refused_naming_the_field(change, field):
    with pytest.raises(InvalidInput) as raised:
        WorkCalendar.from_spec({**SPLIT, **change})
    assert raised.value.field == field


def test_a_spec_reads_back_the_same():
    calendar = WorkCalendar.from_spec(SPLIT)
    assert WorkCalendar.from_spec(calendar.to_spec()) == calendar


def test_split_shifts_skip_lunch_holidays_and_weekends_and_work_make_up_days():
    calendar = WorkCalendar.from_spec(SPLIT)
    # Thursday 2026-12-31 11:00 + 2 h: one hour before lunch, one after -> 14:30.
    assert calendar.add(at(2026, 12, 31, 11), timedelta(hours=2)) == at(2026, 12, 31, 14, 30)
    # Thursday 17:00 + 2 h: Friday 2027-01-01 is a holiday, the weekend is off -> Monday 10:00.
    assert calendar.add(at(2026, 12, 31, 17), timedelta(hours=2)) == at(2027, 1, 4, 10)
    # Friday 2027-01-08 17:00 + 2 h: Saturday the 9th is a make-up workday -> Saturday 10:00.
    assert calendar.add(at(2027, 1, 8, 17), timedelta(hours=2)) == at(2027, 1, 9, 10)
    assert calendar.between(at(2027, 1, 4, 8), at(2027, 1, 4, 20)) == timedelta(hours=7, minutes=30)


def test_always_open_counts_elapsed_time_across_dst():
    calendar = WorkCalendar.from_spec({"time_zone": "America/New_York", "always_open": True})
    start = datetime(2026, 3, 8, 1, 30, tzinfo=calendar.zone)  # 30 min before the spring change
    assert calendar.add(start, timedelta(hours=1)) == start.astimezone(UTC) + timedelta(hours=1)


# --- laws ----------------------------------------------------------------------------------------------
instants = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31),
                        timezones=st.just(UTC))
amounts = st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(hours=120))
calendars = st.sampled_from(CALENDARS)


@settings(max_examples=300, deadline=None)
@given(calendars, instants, amounts)
def test_measuring_what_was_added_gives_the_amount_back(calendar, start, amount):
    assert calendar.between(start, calendar.add(start, amount)) == amount


@settings(max_examples=300, deadline=None)
@given(calendars, instants, amounts)
def test_a_due_time_lies_in_working_time(calendar, start, amount):
    assert calendar.in_working_time(calendar.add(start, amount))


@settings(max_examples=300, deadline=None)
@given(calendars, instants, instants, amounts)
def test_adding_is_monotone_in_the_start(calendar, a, b, amount):
    early, late = sorted((a, b))
    assert calendar.add(early, amount) <= calendar.add(late, amount)


@settings(max_examples=200, deadline=None)
@given(calendars, instants, st.timedeltas(timedelta(0), timedelta(days=20)), st.timedeltas(timedelta(0), timedelta(days=20)))
def test_measuring_is_additive(calendar, a, ab, bc):
    b, c = a + ab, a + ab + bc
    assert calendar.between(a, c) == calendar.between(a, b) + calendar.between(b, c)
    assert calendar.between(c, a) == -calendar.between(a, c)


def test_dst_days_in_new_york_count_the_hours_that_exist():
    calendar = calendar_from_spec(NEW_YORK)
    zone = calendar.zone
    # Sunday 2026-03-08: 02:00-03:00 does not exist, so the 00:30-03:30 shift holds 2 h of working time.
    assert calendar.between(datetime(2026, 3, 8, 0, tzinfo=zone), datetime(2026, 3, 8, 12, tzinfo=zone)) == \
        timedelta(hours=2)
    # Sunday 2026-11-01: 01:00-02:00 happens twice, so the same shift holds 4 h.
    assert calendar.between(datetime(2026, 11, 1, 0, tzinfo=zone), datetime(2026, 11, 1, 12, tzinfo=zone)) == \
        timedelta(hours=4)
