"""The next-reply (periodic update) target, pure: owed from the first response until resolve, each public staff
reply moves it, a missed one is announced once per gap, pauses are excluded and a reopen owes updates again."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from opsat.common.domain import Conflict, InvalidInput, NotDueYet
from opsat.sla_monitor.domain import clocks
from opsat.sla_monitor.domain import commands as c
from opsat.sla_monitor.domain import events as ev
from opsat.sla_monitor.domain.calendars import shipped_version
from opsat.sla_monitor.domain.policies import DEFAULT_POLICIES, Policy

T0 = datetime.fromisoformat("2026-03-02T10:00:00+08:00")
RID = "req-1"
HOURLY = Policy.from_spec("hourly", 1, {"first_response_seconds": 900, "resolution_seconds": 10 * 3600,
                                        "calendar_id": "24x7", "next_reply_seconds": 3600, "warning_thresholds": [],
                                        "escalations": []})


def start(policy: Policy = HOURLY) -> c.StartClock:
    calendar = shipped_version("24x7")
    assert calendar is not None
    return c.StartClock(request_id=RID, organisation_id="acme", kind="incident", priority="P2",
                        customer_tier="standard", at=T0, policy=policy, calendar_id="24x7",
                        calendar_version=calendar.version, calendar=calendar.spec)


def apply(state: clocks.Clock | None, command: object, now: datetime = T0) -> tuple[clocks.Clock, list]:
    events = clocks.decide(state, command, now)
    for event in events:
        state = clocks.evolve(state, event)
    assert state is not None
    return state, events


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_updates_are_owed_from_the_first_response_and_each_staff_reply_moves_the_next():
    state, [started] = apply(None, start())
    assert started.next_reply_seconds == 3600 and state.update_due() is None  # nothing owed before the response
    state, _ = apply(state, c.MeetResponse(RID, at(10), "accepted"))
    assert state.update_due() == at(70) and state.next_check_at() == at(70)
    state, [given] = apply(state, c.MeetResponse(RID, at(40), "replied"))
    assert isinstance(given, ev.UpdateGiven) and given.next_due_at == at(100)
    assert given.next_check_at == at(100)
    with pytest.raises(NotDueYet):
        clocks.decide(state, c.CheckClock(RID), at(99))
    state, [overdue] = apply(state, c.CheckClock(RID), at(105))
    assert isinstance(overdue, ev.UpdateOverdue)
    assert (overdue.at, overdue.since, overdue.due_at) == (at(100), at(40), at(100))
    with pytest.raises(NotDueYet) as once:  # once per gap: what is pending now is the resolution's breach
        apply(state, c.CheckClock(RID), at(200))
    assert once.value.due_at == at(600)
    state, [late] = apply(state, c.MeetResponse(RID, at(120), "replied"))
    assert isinstance(late, ev.UpdateGiven) and state.update_due() == at(180)


def test_an_accept_after_the_response_is_no_update_and_a_policy_without_the_target_refuses_replies():
    state, _ = apply(None, start())
    state, _ = apply(state, c.MeetResponse(RID, at(5), "replied"))
    with pytest.raises(Conflict):
        clocks.decide(state, c.MeetResponse(RID, at(6), "accepted"), at(6))
    plain, _ = apply(None, start(DEFAULT_POLICIES["p1"]))
    plain, _ = apply(plain, c.MeetResponse(RID, at(5), "accepted"))
    with pytest.raises(Conflict):
        clocks.decide(plain, c.MeetResponse(RID, at(6), "replied"), at(6))
    assert plain.next_check_at() is not None and plain.update_due() is None


def test_time_awaiting_the_customer_does_not_count_against_the_update():
    state, _ = apply(None, start())
    state, _ = apply(state, c.MeetResponse(RID, at(0), "accepted"))
    state, _ = apply(state, c.PauseClock(RID, at(30)))
    assert state.next_check_at() is None
    state, _ = apply(state, c.ResumeClock(RID, at(50)))
    assert state.update_due() == at(80)  # 60 minutes owed, 20 of them paused


def test_resolve_ends_the_updates_and_a_reopen_owes_them_again_from_the_reopen():
    state, _ = apply(None, start())
    state, _ = apply(state, c.MeetResponse(RID, at(0), "accepted"))
    state, _ = apply(state, c.MeetResolution(RID, at(30)))
    assert not state.update_pending and state.next_check_at() is None
    with pytest.raises(Conflict):
        clocks.decide(state, c.MeetResponse(RID, at(40), "replied"), at(40))
    state, _ = apply(state, c.ReopenClock(RID, at(200)))
    assert state.update_due() == at(260) and state.update_pending


def test_a_retarget_brings_the_new_policys_update_target():
    state, _ = apply(None, start(DEFAULT_POLICIES["p2"]))
    state, _ = apply(state, c.MeetResponse(RID, at(0), "accepted"))
    assert state.update_due() is None
    state, [retargeted] = apply(state, c.RetargetClock(RID, at(10), "P1", HOURLY))
    assert retargeted.next_reply_seconds == 3600 and state.update_due() == at(60)


@pytest.mark.parametrize("value", [0, -1, "hourly", True])
def test_a_next_reply_target_must_be_positive_seconds(value):
    with pytest.raises(InvalidInput) as refused:
        Policy.from_spec("x", 1, {"first_response_seconds": 60, "resolution_seconds": 600, "next_reply_seconds": value})
    assert refused.value.field == "next_reply_seconds"
