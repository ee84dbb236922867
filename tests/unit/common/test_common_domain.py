"""domain: Actor permissions helpers, DomainError hierarchy, DomainEvent immutability, the `Instant` field type."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel, ValidationError

from opsat.common.domain import (
    STAFF_ROLES,
    SYSTEM_ACTOR,
    Actor,
    AlreadyExists,
    Conflict,
    DomainError,
    DomainEvent,
    Instant,
    InvalidTransition,
    Role,
)


def actor(*roles: Role) -> Actor:
    return Actor(id="u1", organisation="acme", roles=frozenset(roles))


@pytest.mark.parametrize("role", [Role.agent, Role.team_lead, Role.manager, Role.risk_officer, Role.admin, Role.service])
def test_staff_roles_are_staff_and_read_everything(role: Role):
    a = actor(role)
    assert a.is_staff
    assert a.reads_everything


def test_requester_is_neither_staff_nor_reads_everything():
    a = actor(Role.requester)
    assert not a.is_staff
    assert not a.reads_everything


def test_auditor_reads_everything_but_is_not_staff():
    a = actor(Role.auditor)
    assert not a.is_staff
    assert a.reads_everything


def test_no_roles_means_no_access():
    a = actor()
    assert not a.is_staff
    assert not a.reads_everything
    assert not a.has(Role.requester)


def test_mixed_roles():
    a = actor(Role.requester, Role.auditor)
    assert a.reads_everything and not a.is_staff
    assert actor(Role.requester, Role.agent).is_staff


def test_staff_roles_exclude_requester_and_auditor():
    assert Role.requester not in STAFF_ROLES
    assert Role.auditor not in STAFF_ROLES
    assert set(Role) - STAFF_ROLES == {Role.requester, Role.auditor}


def test_has_any_of():
    a = actor(Role.agent)
    assert a.has(Role.agent)
    assert a.has(Role.manager, Role.agent)
    assert not a.has(Role.manager, Role.admin)
    assert not a.has()


def test_role_values_compare_as_strings():
    assert Role("team_lead") is Role.team_lead
    assert Role.agent == "agent"
    with pytest.raises(ValueError):
        Role("Agent")


def test_system_actor_is_staff_service():
    assert SYSTEM_ACTOR.has(Role.service)
    assert SYSTEM_ACTOR.is_staff and SYSTEM_ACTOR.reads_everything


def test_actor_is_immutable_and_hashable():
    a = actor(Role.agent)
    with pytest.raises(FrozenInstanceError):
        a.id = "u2"  # type: ignore[misc]
    assert a == actor(Role.agent)
    assert hash(a) == hash(actor(Role.agent))


def test_error_hierarchy():
    assert issubclass(InvalidTransition, Conflict)
    assert issubclass(AlreadyExists, Conflict)
    assert issubclass(Conflict, DomainError)
    err = InvalidTransition("cannot close", field="status")
    assert (err.detail, err.field, err.code) == ("cannot close", "status", "InvalidTransition")


class Happened(DomainEvent):
    event_type = "opsat.test.happened"
    what: str


def test_domain_events_are_frozen_strict_and_default_to_v1():
    e = Happened(what="x")
    assert Happened.schema_version == 1
    with pytest.raises(ValidationError):
        e.what = "y"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Happened(what="x", extra=1)
    assert Happened(what="x") == e


def test_not_due_yet_is_a_conflict_that_names_when_to_come_back():
    from datetime import UTC, datetime

    from opsat.common.domain import Conflict, NotDueYet
    from opsat.common.errors import status_for

    due = datetime(2026, 10, 10, 8, 0, tzinfo=UTC)
    error = NotDueYet("auto-close is due later", due_at=due, code="auto_close_not_due")
    assert isinstance(error, Conflict) and status_for(error) == 409
    assert (error.due_at, error.code, error.detail) == (due, "auto_close_not_due", "auto-close is due later")


class _Pydantic(BaseModel):
    at: AwareDatetime


class _Standard(BaseModel):
    at: Instant


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))])))
def test_an_instant_reads_what_pydantic_reads_into_a_standard_library_time_zone(at: datetime):
    """The same instant, offset and JSON as pydantic's own reading, from its JSON or Python's ISO text alike."""
    for text in (_Pydantic(at=at).model_dump(mode="json")["at"], at.isoformat()):
        ours, theirs = _Standard.model_validate({"at": text}), _Pydantic.model_validate({"at": text})
        assert type(ours.at.tzinfo) is timezone
        assert ours.at == theirs.at and ours.at.utcoffset() == theirs.at.utcoffset()
        assert ours.model_dump_json() == theirs.model_dump_json()


@pytest.mark.parametrize("value", ["2026-11-27T01:02:03", "2026-13-01T00:00:00Z", "yesterday", "", None, [2026]])
def test_an_instant_refuses_what_pydantic_refuses(value: object):
    with pytest.raises(ValidationError):
        _Pydantic.model_validate({"at": value})
    with pytest.raises(ValidationError):
        _Standard.model_validate({"at": value})
