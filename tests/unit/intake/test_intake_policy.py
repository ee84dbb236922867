"""IntakePolicy: the priority matrix and the configuration of intake rules."""

from datetime import date

import pytest

from opsat.common.calendar import default_calendar
from opsat.common.domain import InvalidInput
from opsat.intake.domain.policy import IntakePolicy
from opsat.intake.domain.values import LABELS_ZH, Priority, RequestKind, Status

P1, P2, P3, P4 = Priority.P1, Priority.P2, Priority.P3, Priority.P4


@pytest.mark.parametrize(
    ("impact", "urgency", "priority"),
    [
        (1, 1, P1),
        (1, 2, P2),
        (2, 1, P2),
        (1, 3, P3),
        (2, 2, P3),
        (3, 1, P3),
        (2, 3, P4),
        (3, 2, P4),
        (3, 3, P4),
    ],
)
def test_default_matrix_follows_the_handbook(impact: int, urgency: int, priority: Priority) -> None:
    assert IntakePolicy().priority_for(impact, urgency) is priority


@pytest.mark.parametrize(("impact", "urgency", "field"), [(0, 1, "impact"), (1, 4, "urgency"), (True, 1, "impact")])
def test_priority_for_rejects_levels_outside_one_to_three(impact, urgency, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        IntakePolicy().priority_for(impact, urgency)
    assert raised.value.field == field


def test_defaults() -> None:
    policy = IntakePolicy()
    assert policy.reopen_window_days == 7
    assert policy.auto_close_business_days == 3
    assert policy.approval_required_kinds == {RequestKind.change}
    assert policy.requirement_confirmation_kinds == {RequestKind.service_request, RequestKind.change}
    assert policy.calendar == default_calendar()


def test_from_mapping_builds_a_custom_policy() -> None:
    policy = IntakePolicy.from_mapping(
        {
            "priority_matrix": {"P1": [[1, 1], [1, 2]], "P2": [[2, 1]], "P3": [[2, 2]]},
            "reopen_window_days": 14,
            "auto_close_business_days": 5,
            "approval_required_kinds": ["change", "service_request"],
            "requirement_confirmation_kinds": [],
            "calendar": {"holidays": ["2025-10-01"]},
        }
    )
    assert policy.priority_for(1, 2) is P1
    assert policy.priority_for(2, 1) is P2
    assert policy.priority_for(1, 3) is P4  # not listed: "the rest"
    assert policy.reopen_window_days == 14
    assert policy.auto_close_business_days == 5
    assert policy.approval_required_kinds == {RequestKind.change, RequestKind.service_request}
    assert policy.requirement_confirmation_kinds == frozenset()
    assert policy.calendar.holidays == {date(2025, 10, 1)}


def test_from_mapping_of_nothing_is_the_default_and_to_mapping_round_trips() -> None:
    assert IntakePolicy.from_mapping({}) == IntakePolicy()
    custom = IntakePolicy.from_mapping({"priority_matrix": {"P1": [[1, 1], [2, 1]]}, "reopen_window_days": 3})
    assert IntakePolicy.from_mapping(custom.to_mapping()) == custom
    assert IntakePolicy().to_mapping()["priority_matrix"]["P2"] == [[1, 2], [2, 1]]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"priority_matrix": {"P1": [[1, 1]], "P2": [[1, 1]]}}, "priority_matrix.P2"),
        ({"priority_matrix": {"P0": [[1, 1]]}}, "priority_matrix.P0"),
        ({"priority_matrix": {"P1": [[1, 4]]}}, "priority_matrix.P1"),
        ({"priority_matrix": {"P1": [[1]]}}, "priority_matrix.P1"),
        ({"priority_matrix": {"P1": "1,1"}}, "priority_matrix.P1"),
        ({"priority_matrix": [[1, 1]]}, "priority_matrix"),
        ({"reopen_window_days": -1}, "reopen_window_days"),
        ({"auto_close_business_days": 2.5}, "auto_close_business_days"),
        ({"auto_close_business_days": True}, "auto_close_business_days"),
        ({"approval_required_kinds": ["upgrade"]}, "approval_required_kinds"),
        ({"requirement_confirmation_kinds": "change"}, "requirement_confirmation_kinds"),
        ({"calendar": {"time_zone": "Nowhere/City"}}, "calendar.time_zone"),
        ({"calendar": {"work_start": "18:00", "work_end": "09:00"}}, "calendar"),
        ({"reopen_days": 7}, "reopen_days"),
    ],
)
def test_from_mapping_rejects_bad_configuration(config: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        IntakePolicy.from_mapping(config)
    assert raised.value.field == field


def test_a_matrix_must_cover_every_cell() -> None:
    with pytest.raises(InvalidInput) as raised:
        IntakePolicy(priority_matrix={(1, 1): P1})
    assert raised.value.field == "priority_matrix"


def test_policy_is_immutable_and_hashable() -> None:
    policy = IntakePolicy()
    with pytest.raises(TypeError):
        policy.priority_matrix[(1, 1)] = P4  # type: ignore[index]
    hash(policy)


def test_every_status_has_a_chinese_label() -> None:
    assert all(status in LABELS_ZH for status in Status)
    assert all(kind in LABELS_ZH for kind in RequestKind)
