"""Intake follows the SLA monitor's calendars for auto-close: what it reads of the events is published, the
policy names the calendar it follows, and a followed spec counts the same business days."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from opsat.common.calendar import default_calendar
from opsat.common.domain import InvalidInput
from opsat.common.reactions import check_against_schema, schemas_from_asyncapi
from opsat.common.workhours import WorkCalendar, shipped_calendar
from opsat.intake.app.calendars import SLA_READS
from opsat.intake.domain.policy import IntakePolicy

DOCS = Path(__file__).resolve().parents[3] / "docs" / "events"


def test_the_fields_read_of_sla_calendar_events_are_in_slas_published_schemas():
    schemas = schemas_from_asyncapi(json.loads((DOCS / "sla.asyncapi.json").read_text()))
    assert {cls.event_type: check_against_schema(cls, schemas) for cls in SLA_READS} == \
        {cls.event_type: [] for cls in SLA_READS}


def test_the_default_policy_follows_the_shipped_calendar_and_an_own_calendar_follows_none():
    assert IntakePolicy().follows_calendar == "cn-default"
    assert IntakePolicy.from_mapping({"calendar": {"always_open": True}}).follows_calendar is None
    assert IntakePolicy.from_mapping({"calendar": {"always_open": True},
                                      "follows_calendar": "hk-office"}).follows_calendar == "hk-office"
    assert IntakePolicy.from_mapping({"follows_calendar": None}).to_mapping()["follows_calendar"] is None


@pytest.mark.parametrize("value", ["Bad Id", 7, ""])
def test_a_followed_calendar_is_named_by_an_sla_calendar_id(value):
    with pytest.raises(InvalidInput) as refused:
        IntakePolicy.from_mapping({"follows_calendar": value})
    assert refused.value.field == "follows_calendar"


def test_the_shipped_calendar_reads_as_intakes_default_calendar():
    assert shipped_calendar().to_business_calendar() == default_calendar()


def test_a_split_shift_calendar_keeps_its_days_when_counting_business_days():
    spec = {"time_zone": "Asia/Hong_Kong", "hours": {"mon": [["09:00", "12:00"], ["13:30", "18:00"]],
                                                     "sat": [["10:00", "14:00"]]},
            "holidays": ["2027-01-04"], "makeup_workdays": ["2027-01-03"]}
    calendar = WorkCalendar.from_spec(spec).to_business_calendar()
    assert calendar.time_zone == "Asia/Hong_Kong" and calendar.working_weekdays == {0, 5}
    assert (calendar.work_start.isoformat(), calendar.work_end.isoformat()) == ("09:00:00", "18:00:00")
    assert not calendar.is_working_day(date(2027, 1, 4)) and calendar.is_working_day(date(2027, 1, 3))
    assert WorkCalendar.from_spec({"always_open": True}).to_business_calendar().always_open
