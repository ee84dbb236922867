"""Calendars and policies as versioned configuration, through the kit's handler on the memory store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opsat.common.commands import CommandMeta
from opsat.common.domain import SYSTEM_ACTOR, Actor, Conflict, Forbidden, InvalidInput, NotDueYet, NotFound, Role
from opsat.common.eventstore import fold
from opsat.common.memstore import InMemoryEventStore
from opsat.sla_monitor.domain import calendars, policies
from opsat.sla_monitor.domain import commands as c
from opsat.sla_monitor.service import SERVICE
from opsat.sla_monitor.settings import SlaSettings

T0 = datetime(2026, 11, 2, 2, tzinfo=UTC)
ADMIN = Actor(id="root", organisation="ops", roles=frozenset({Role.admin}))
AGENT = Actor(id="bob", organisation="ops", roles=frozenset({Role.agent}))


def meta(n: int = 1) -> CommandMeta:
    return CommandMeta(correlation_id=f"c{n}")


@pytest.fixture
def handler():
    return SERVICE.command_handler(SlaSettings(environment="test"), InMemoryEventStore(SERVICE.registry()),
                                   clock=lambda: T0)


async def test_adding_next_years_days_to_the_shipped_calendar_makes_version_2(handler):
    result = await handler.execute(c.AddCalendarDays("cn-default", holidays=("2027-01-01",),
                                                     makeup_workdays=("2027-02-06",)), ADMIN, meta())
    current = fold(calendars.evolve, await handler.store.load("cn-default"))
    assert (result.version, current.version) == (1, 2)  # stream version 1 = calendar version 2 (the shipped is 1)
    assert "2027-01-01" in current.spec["holidays"] and "2026-10-01" in current.spec["holidays"]
    assert current.spec["makeup_workdays"][-1] == "2027-02-06"
    history = await handler.store.load("cn-default")
    assert history[0].event.holidays == ["2027-01-01"] and history[0].metadata["tenant"] == "ops"


@pytest.mark.parametrize(("command", "field"), [
    (c.AddCalendarDays("cn-default", holidays=("2026-09-20",)), "makeup_workdays"),  # a shipped make-up day
    (c.AddCalendarDays("cn-default"), "holidays"),
    (c.AddCalendarDays("cn-default", holidays=("2027-13-01",)), "holidays"),
    (c.DefineCalendar("ops-hk", time_zone="Asia/Nowhere", hours={"mon": [["09:00", "18:00"]]}), "time_zone"),
    (c.DefineCalendar("ops-hk", hours={"mon": [["09:00", "12:30"], ["12:00", "18:00"]]}), "hours.mon"),
    (c.DefineCalendar("Bad Id", hours={"mon": [["09:00", "18:00"]]}), "calendar_id"),
    (c.DefinePolicy("gold", first_response_seconds=0, resolution_seconds=60), "first_response_seconds"),
    (c.DefinePolicy("gold", first_response_seconds=60, resolution_seconds=60, warning_thresholds=(80, 50)),
     "warning_thresholds"),
    (c.DefinePolicy("gold", first_response_seconds=60, resolution_seconds=60, warning_thresholds=(50, 100)),
     "warning_thresholds"),
    (c.DefinePolicy("gold", first_response_seconds=60, resolution_seconds=60, priorities=("P9",)), "priorities"),
    (c.DefinePolicy("gold", first_response_seconds=60, resolution_seconds=60,
                    escalations=({"percent": 100, "role": "manager"}, {"percent": 50, "role": "lead"})),
     "escalations"),
])
async def test_bad_configuration_is_refused_naming_the_field_and_stores_nothing(handler, command, field):
    with pytest.raises(InvalidInput) as raised:
        await handler.execute(command, ADMIN, meta())
    assert raised.value.field == field
    stream = getattr(command, "calendar_id", None) or command.policy_id
    assert await handler.store.stream_version(stream) == 0


async def test_only_administrators_change_configuration_and_nobody_moves_a_clock_by_hand(handler):
    with pytest.raises(Forbidden):
        await handler.execute(c.AddCalendarDays("cn-default", holidays=("2027-01-01",)), AGENT, meta())
    with pytest.raises(NotFound):  # no clock r1: the handler answers before the domain's role rule
        await handler.execute(c.CheckClock("r1"), ADMIN, meta())


async def test_a_new_policy_version_is_chosen_by_specificity():
    gold = policies.Policy.from_spec("gold", 1, {"first_response_seconds": 60, "resolution_seconds": 600,
                                                 "customer_tiers": ["gold"], "priorities": ["P2"]})
    book = [*policies.DEFAULT_POLICIES.values(), gold]
    assert policies.choose(book, "incident", "P2", "gold", None).policy_id == "gold"
    assert policies.choose(book, "incident", "P2", "standard", None).policy_id == "p2"
    assert policies.choose([gold], "incident", "P3", "standard", None) is policies.FALLBACK


async def test_redefining_a_default_policy_makes_its_version_2(handler):
    await handler.execute(c.DefinePolicy("p3", first_response_seconds=7200, resolution_seconds=86400,
                                         priorities=("P3",)), ADMIN, meta())
    policy = fold(policies.evolve, await handler.store.load("p3"))
    assert (policy.version, policy.first_response.total_seconds()) == (2, 7200)


async def test_the_timer_command_goes_through_the_kit_to_the_clock(handler):
    policy = policies.DEFAULT_POLICIES["p1"]
    calendar = calendars.shipped_version("24x7")
    start = c.StartClock(request_id="r1", organisation_id="acme", kind="incident", priority="P1",
                         customer_tier="standard", at=T0, policy=policy, calendar_id="24x7",
                         calendar_version=calendar.version, calendar=calendar.spec)
    await handler.execute(start, SYSTEM_ACTOR, meta())
    with pytest.raises(NotDueYet):
        await handler.execute(c.CheckClock("r1"), SYSTEM_ACTOR, meta(2))
    assert (await handler.store.load("r1"))[0].metadata["tenant"] == "acme"


async def test_a_policy_id_cannot_become_a_calendar_nor_the_other_way_round(handler):
    await handler.execute(c.DefinePolicy("gold", first_response_seconds=60, resolution_seconds=600), ADMIN, meta())
    await handler.execute(c.DefineCalendar("hk", hours={"mon": [["09:00", "18:00"]]}), ADMIN, meta(2))
    with pytest.raises(Conflict) as raised:
        await handler.execute(c.AddCalendarDays("gold", holidays=("2027-01-01",)), ADMIN, meta(3))
    assert raised.value.field == "calendar_id"
    with pytest.raises(Conflict) as raised:
        await handler.execute(c.DefinePolicy("hk", first_response_seconds=60, resolution_seconds=600), ADMIN, meta(4))
    assert raised.value.field == "policy_id"


_targets = st.floats(min_value=1e-9, max_value=10 * 365 * 86400, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(response=_targets, resolution=_targets,
       thresholds=st.lists(st.integers(1, 99), max_size=3, unique=True).map(sorted),
       tiers=st.lists(st.text(min_size=1, max_size=5), max_size=3))
def test_every_policy_a_define_stores_reads_back_as_the_same_policy(response, resolution, thresholds, tiers):
    command = c.DefinePolicy("gold", first_response_seconds=response, resolution_seconds=resolution,
                             customer_tiers=tuple(tiers), warning_thresholds=tuple(thresholds))
    try:
        [event] = policies.decide(None, command, T0, "root")
    except InvalidInput as refused:
        assert min(response, resolution) < 1 and refused.field in ("first_response_seconds", "resolution_seconds")
        return
    read_back = policies.evolve(None, event)
    assert read_back.to_spec() == event.policy and read_back.version == 1
