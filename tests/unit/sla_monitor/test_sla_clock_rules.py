"""The clock's rules, pure: start, response, pause and resume, resolution, reopen, thresholds once each."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from opsat.common.domain import AlreadyExists, Conflict, NotDueYet
from opsat.common.workhours import shipped_calendar
from opsat.sla_monitor.domain import clocks
from opsat.sla_monitor.domain import commands as c
from opsat.sla_monitor.domain import events as ev
from opsat.sla_monitor.domain.calendars import shipped_version
from opsat.sla_monitor.domain.policies import DEFAULT_POLICIES

CN = shipped_calendar()
ZONE = CN.zone
MON = datetime(2026, 3, 2, 10, tzinfo=ZONE)  # an ordinary Monday, 10:00 in Shanghai
RID = "req-1"


def start(priority: str = "P2", at: datetime = MON) -> c.StartClock:
    policy = DEFAULT_POLICIES[priority.lower()]
    calendar = shipped_version(policy.calendar_id)
    assert calendar is not None
    return c.StartClock(request_id=RID, organisation_id="acme", kind="incident", priority=priority,
                        customer_tier="standard", at=at, policy=policy, calendar_id=calendar.calendar_id,
                        calendar_version=calendar.version, calendar=calendar.spec)


def run(*commands: object, now: datetime = MON) -> tuple[clocks.Clock, list[ev.ClockEvent]]:
    state, produced = None, []
    for command in commands:
        events = clocks.decide(state, command, now)
        for event in events:
            state = clocks.evolve(state, event)
        produced += events
    assert state is not None
    return state, produced


def test_a_clock_starts_with_its_policy_and_calendar_versions_and_due_times():
    state, [started] = run(start())
    assert (started.policy_id, started.policy_version, started.calendar_id, started.calendar_version) == \
        ("p2", 1, "cn-default", 1)
    assert started.due == {"response": MON + timedelta(minutes=30), "resolution": datetime(2026, 3, 2, 18, tzinfo=ZONE)}
    assert started.next_check_at == MON + timedelta(minutes=15)  # the response's 50 % warning
    with pytest.raises(AlreadyExists):
        clocks.decide(state, start(), MON)


def test_an_accept_after_a_reply_met_the_response_still_gives_the_clock_its_team():
    state, events = run(start(), c.MeetResponse(RID, MON + timedelta(minutes=5), "replied"),
                        c.MeetResponse(RID, MON + timedelta(minutes=20), "accepted", team="net"))
    assert [type(e) for e in events[1:]] == [ev.ResponseMet, ev.TeamChanged]
    assert state.team == "net" and events[1].on_time
    with pytest.raises(Conflict):  # the same team again changes nothing
        clocks.decide(state, c.MeetResponse(RID, MON + timedelta(minutes=30), "accepted", team="net"), MON)


def test_accept_meets_the_response_on_time_and_a_later_reply_changes_nothing():
    state, events = run(start(), c.MeetResponse(RID, MON + timedelta(minutes=20), "accepted", team="net"))
    assert isinstance(events[-1], ev.ResponseMet) and events[-1].on_time
    assert state.team == "net"
    with pytest.raises(Conflict):
        clocks.decide(state, c.MeetResponse(RID, MON + timedelta(minutes=40), "replied"), MON)


def test_a_pause_moves_every_due_time_by_the_paused_business_time():
    before, _ = run(start())
    # Paused Monday 11:00 to Tuesday 10:00: 7 business hours (11-18) + 1 (09-10) = 8 h.
    paused_at, resumed_at = MON + timedelta(hours=1), MON + timedelta(days=1)
    state, events = run(start(), c.PauseClock(RID, paused_at), c.ResumeClock(RID, resumed_at))
    assert events[1].next_check_at is None  # a paused clock has no timer
    resumed = events[-1]
    assert isinstance(resumed, ev.ClockResumed) and resumed.paused_seconds == 8 * 3600
    for name in clocks.TARGETS:
        assert CN.between(before.due(name), state.due(name)) == timedelta(hours=8)
    assert resumed.due["resolution"] == state.due("resolution")


def test_the_timer_announces_warnings_breach_and_escalations_once_each():
    state, _ = run(start("P1"))  # 24x7: 15 min response, 4 h resolution
    with pytest.raises(NotDueYet) as early:
        clocks.decide(state, c.CheckClock(RID), MON + timedelta(minutes=5))
    assert early.value.due_at == MON + timedelta(minutes=7, seconds=30)
    state, events = run(start("P1"), c.CheckClock(RID), now=MON + timedelta(minutes=23))
    kinds = [(type(e).__name__, getattr(e, "percent", 100), e.escalate_to) for e in events[1:]]
    assert kinds == [("ThresholdReached", 50, "team_lead"), ("ThresholdReached", 80, None),
                     ("TargetBreached", 100, "manager"), ("ClockEscalated", 150, "director")]
    assert all(e.next_check_at == MON + timedelta(hours=2) for e in events[1:])  # resolution's 50 %
    with pytest.raises(NotDueYet):  # nothing new for the response
        clocks.decide(state, c.CheckClock(RID), MON + timedelta(minutes=30))


def test_a_paused_clock_announces_nothing_and_reopen_resumes_the_resolution():
    state, _ = run(start("P1"), c.PauseClock(RID, MON + timedelta(minutes=1)))
    with pytest.raises(Conflict):
        clocks.decide(state, c.CheckClock(RID), MON + timedelta(hours=9))
    resolved_at, reopened_at = MON + timedelta(hours=1), MON + timedelta(hours=3)
    state, events = run(start("P1"), c.MeetResponse(RID, MON, "accepted"), c.MeetResolution(RID, resolved_at),
                        c.ReopenClock(RID, reopened_at))
    assert state.running("resolution") and events[-1].paused_seconds == 2 * 3600
    assert state.due("resolution") == MON + timedelta(hours=6)


def test_resolving_while_awaiting_the_customer_ends_the_pause_and_meets_both_targets():
    state, events = run(start(), c.PauseClock(RID, MON + timedelta(minutes=5)),
                        c.MeetResolution(RID, MON + timedelta(minutes=50)))
    assert [type(e).__name__ for e in events[2:]] == ["ClockResumed", "ResponseMet", "ResolutionMet"]
    assert events[3].on_time  # only 5 business minutes ran before the pause
    assert state.status == "met" and events[-1].next_check_at is None


def test_a_cancelled_clock_refuses_everything():
    state, _ = run(start(), c.CancelClock(RID, MON, "cancelled"))
    with pytest.raises(Conflict):
        clocks.decide(state, c.CheckClock(RID), MON + timedelta(days=9))
    assert clocks.view(state, MON)["status"] == "cancelled"


def test_the_view_shows_remaining_and_paused_business_time():
    state, _ = run(start(), c.PauseClock(RID, MON + timedelta(minutes=10)))
    view = clocks.view(state, MON + timedelta(hours=2))
    assert view["paused"] and view["paused_seconds"] == 110 * 60
    assert view["targets"]["response"]["remaining_seconds"] == 20 * 60


def test_a_priority_change_retargets_the_running_clock_on_its_own_calendar():
    state, _ = run(start("P3"), c.CheckClock(RID), now=MON + timedelta(hours=2, minutes=30))  # response at 50 %
    assert state.targets["response"].reached == {50}
    p1 = DEFAULT_POLICIES["p1"]
    state, events = run(start("P3"), c.CheckClock(RID), c.RetargetClock(RID, MON + timedelta(hours=3), "P1", p1),
                        now=MON + timedelta(hours=2, minutes=30))
    retargeted = events[-1]
    assert isinstance(retargeted, ev.ClockRetargeted) and (retargeted.policy_id, retargeted.priority) == ("p1", "P1")
    # The clock keeps its business calendar (P1's 24x7 applies to new clocks only) and what it announced.
    assert retargeted.due["resolution"] == CN.add(MON, timedelta(hours=4))
    assert state.targets["response"].reached == {50} and state.calendar_id == "cn-default"
    assert retargeted.next_check_at == MON + timedelta(minutes=12)  # 80 % of 15 min: past, so the timer fires at once
    with pytest.raises(Conflict):
        clocks.decide(state, c.RetargetClock(RID, MON, "P1", p1), MON)


def test_a_met_target_keeps_its_due_time_when_a_later_pause_moves_the_others():
    state, events = run(start(), c.MeetResponse(RID, MON + timedelta(minutes=5), "accepted"),
                        c.PauseClock(RID, MON + timedelta(hours=1)), c.ResumeClock(RID, MON + timedelta(hours=2)))
    assert set(events[-1].due) == {"resolution"}
    view = clocks.view(state, MON + timedelta(hours=3))
    assert view["targets"]["response"]["due_at"] == MON + timedelta(minutes=30)
    assert view["targets"]["resolution"]["due_at"] == CN.add(MON, timedelta(hours=9))


def test_applying_a_decisions_events_gives_the_state_the_events_alone_give():
    """The handler folds a decision's events again; it gets the decision's own states, equal to a fresh fold."""
    commands = [start(), c.MeetResponse(RID, MON + timedelta(minutes=5), "accepted", team="net"),
                c.PauseClock(RID, MON + timedelta(minutes=10)), c.MeetResolution(RID, MON + timedelta(hours=2))]
    state, produced = run(*commands)
    clocks.decide(state, c.ReopenClock(RID, MON + timedelta(hours=3)), MON)  # another decision: the fold is new
    refolded = None
    for event in [e.model_copy() for e in produced]:  # equal events, not the decided objects
        refolded = clocks.evolve(refolded, event)
    assert refolded == state
    assert state.resolved_at == MON + timedelta(hours=2) and state.paused_since is None and state.team == "net"


def test_a_state_equal_to_a_decided_one_but_not_it_is_folded_afresh():
    state, _ = run(start())
    [met] = clocks.decide(state, c.MeetResponse(RID, MON + timedelta(minutes=5), "accepted", team="net"), MON)
    decided = clocks.evolve(state, met)
    other = clocks._replace(state, team="ops")  # noqa: SLF001 - a different state the event may meet
    assert clocks.evolve(other, met) is not decided and clocks.evolve(other, met).team == "net"
    assert clocks.evolve(state, met) is decided
