"""PolicyBook: an organisation's overrides merge into the default policy key by key, nested mappings too."""

from __future__ import annotations

from datetime import date, time

from opsat.common.settings import merge_nested
from opsat.intake.app.handlers import PolicyBook

DEFAULT = {
    "reopen_window_days": 10,
    "calendar": {"time_zone": "Europe/Berlin", "work_start": "09:30", "work_end": "17:30",
                 "holidays": ["2025-12-25", "2025-12-26"]},
}


def test_overriding_one_calendar_key_keeps_the_defaults_other_calendar_keys() -> None:
    book = PolicyBook(DEFAULT, {"acme": {"calendar": {"work_start": "08:00"}}})
    calendar = book.for_org("acme").calendar
    assert calendar.work_start == time(8, 0)
    assert calendar.time_zone == "Europe/Berlin"
    assert calendar.work_end == time(17, 30)
    assert calendar.holidays == {date(2025, 12, 25), date(2025, 12, 26)}
    assert book.for_org("acme").reopen_window_days == 10


def test_other_organisations_and_unknown_ones_get_the_default() -> None:
    book = PolicyBook(DEFAULT, {"acme": {"calendar": {"work_start": "08:00"}}})
    for org in ("other", None):
        assert book.for_org(org).calendar.work_start == time(9, 30)


def test_a_list_in_an_override_replaces_the_default_list() -> None:
    book = PolicyBook(DEFAULT, {"acme": {"calendar": {"holidays": ["2025-10-01"]}}})
    assert book.for_org("acme").calendar.holidays == {date(2025, 10, 1)}


def test_the_default_is_not_changed_by_merging() -> None:
    PolicyBook(DEFAULT, {"acme": {"calendar": {"work_start": "08:00"}}})
    assert DEFAULT["calendar"]["work_start"] == "09:30"


def test_merge_nested_merges_mappings_at_any_depth_and_replaces_everything_else() -> None:
    base = {"a": {"b": {"c": 1, "d": 2}, "e": [1]}, "f": 1}
    assert merge_nested(base, {"a": {"b": {"c": 9}, "e": [2]}, "g": {}}) == {
        "a": {"b": {"c": 9, "d": 2}, "e": [2]}, "f": 1, "g": {}}
    assert merge_nested(base, {"a": None}) == {"a": None, "f": 1}
    assert base == {"a": {"b": {"c": 1, "d": 2}, "e": [1]}, "f": 1}
