"""Breach excusal, pure: only a breached target, a request and a decision each with a reason, never decided by
the one who asked; the clock's timer is unaffected."""

from __future__ import annotations

from datetime import timedelta

import pytest

from opsat.common.domain import Conflict, Forbidden, InvalidInput
from opsat.sla_monitor.domain import clocks
from opsat.sla_monitor.domain import commands as c
from tests.unit.sla_monitor.test_sla_clock_rules import MON, RID, run, start

LATE = MON + timedelta(hours=2)  # P2: response (30 min) breached, resolution (8 h) not


def breached() -> clocks.Clock:
    state, _ = run(start("P2"), c.CheckClock(RID), now=LATE)
    assert clocks.BREACH in state.targets["response"].reached
    return state


def excuse(state: clocks.Clock, command: object, by: str) -> tuple[clocks.Clock, list]:
    events = clocks.decide_excusal(state, command, LATE, by)
    for event in events:
        state = clocks.evolve(state, event)
    return state, events


def test_a_breach_is_excused_by_a_request_and_another_persons_approval_both_with_reasons():
    state = breached()
    check_before = state.next_check_at()
    state, [asked] = excuse(state, c.RequestExcusal(RID, "response", "customer", "customer unreachable"), "bob")
    assert (asked.cause, asked.reason, asked.by, asked.next_check_at) == ("customer", "customer unreachable", "bob",
                                                                          check_before)
    with pytest.raises(Forbidden):
        excuse(state, c.ApproveExcusal(RID, "response", "fine"), "bob")
    state, [approved] = excuse(state, c.ApproveExcusal(RID, "response", "confirmed in the call log"), "carol")
    excusal = clocks.view(state, LATE)["targets"]["response"]["excusal"]
    assert excusal == {"status": "approved", "cause": "customer", "requested_by": "bob",
                       "request_reason": "customer unreachable", "decided_by": "carol",
                       "decision_reason": "confirmed in the call log"}
    assert clocks.view(state, LATE)["targets"]["response"]["breached"]  # still visible as a breach
    with pytest.raises(Conflict):
        excuse(state, c.RequestExcusal(RID, "response", "customer", "again"), "bob")


def test_a_rejected_excusal_may_be_asked_again():
    state, _ = excuse(breached(), c.RequestExcusal(RID, "response", "third_party", "carrier outage"), "bob")
    state, _ = excuse(state, c.RejectExcusal(RID, "response", "no evidence"), "carol")
    assert state.targets["response"].excusal.status == "rejected"
    state, _ = excuse(state, c.RequestExcusal(RID, "response", "third_party", "carrier ticket 42"), "bob")
    assert state.targets["response"].excusal.status == "requested"


@pytest.mark.parametrize(("command", "field_or_code"), [
    (c.RequestExcusal(RID, "resolution", "customer", "why"), "not_breached"),
    (c.RequestExcusal(RID, "response", "weather", "why"), "cause"),
    (c.RequestExcusal(RID, "response", "customer", "   "), "reason"),
    (c.RequestExcusal(RID, "answer", "customer", "why"), "target"),
    (c.ApproveExcusal(RID, "response", "ok"), "no_excusal_requested"),
])
def test_what_cannot_be_excused_is_refused_naming_the_field(command, field_or_code):
    with pytest.raises((InvalidInput, Conflict)) as refused:
        excuse(breached(), command, "bob")
    assert field_or_code in (refused.value.field, refused.value.code)


async def test_a_calendars_id_is_no_clock_to_excuse():
    from opsat.common.domain import NotFound
    from opsat.common.memstore import InMemoryEventStore
    from opsat.sla_monitor.service import SERVICE
    from opsat.sla_monitor.settings import SlaSettings
    from tests.unit.sla_monitor.test_sla_configuration import ADMIN, AGENT, T0, meta

    handler = SERVICE.command_handler(SlaSettings(environment="test"), InMemoryEventStore(SERVICE.registry()),
                                      clock=lambda: T0)
    await handler.execute(c.AddCalendarDays("cn-default", holidays=("2027-01-01",)), ADMIN, meta())
    with pytest.raises(NotFound) as refused:
        await handler.execute(c.RequestExcusal("cn-default", "response", "customer", "why"), AGENT, meta(2))
    assert refused.value.field == "request_id"
