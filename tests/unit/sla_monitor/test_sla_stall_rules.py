"""The stalled flag, pure: flagged once per quiet spell after the policy's business time without activity,
cleared by activity, never while awaiting the customer or after resolve, and counted on the clock's calendar."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from opsat.common.domain import Conflict, InvalidInput, NotDueYet
from opsat.common.workhours import shipped_calendar
from opsat.sla_monitor.domain import clocks
from opsat.sla_monitor.domain import commands as c
from opsat.sla_monitor.domain import events as ev
from opsat.sla_monitor.domain.calendars import shipped_version
from opsat.sla_monitor.domain.policies import DEFAULT_POLICIES, Policy
from opsat.sla_monitor.projections.targets import HolderAssigned, is_reassignment

ZONE = shipped_calendar().zone
MON = datetime(2026, 3, 2, 10, tzinfo=ZONE)  # an ordinary Monday, 10:00 in Shanghai
RID = "req-1"


def start(priority: str = "P2", at: datetime = MON) -> c.StartClock:
    policy = DEFAULT_POLICIES[priority.lower()]
    calendar = shipped_version(policy.calendar_id)
    assert calendar is not None
    return c.StartClock(request_id=RID, organisation_id="acme", kind="incident", priority=priority,
                        customer_tier="standard", at=at, policy=policy, calendar_id=calendar.calendar_id,
                        calendar_version=calendar.version, calendar=calendar.spec)


def apply(state: clocks.Clock | None, command: object, now: datetime) -> tuple[clocks.Clock, list[ev.ClockEvent]]:
    events = clocks.decide(state, command, now)
    for event in events:
        state = clocks.evolve(state, event)
    assert state is not None
    return state, events


def stall_check(quiet_since: datetime) -> c.CheckStall:
    return c.CheckStall(RID, quiet_since.isoformat())


def test_a_p2_request_stalls_after_four_business_hours_counted_on_its_calendar():
    state, _ = apply(None, start(at=datetime(2026, 3, 2, 16, tzinfo=ZONE)), MON)
    quiet = state.last_activity_at
    assert quiet == datetime(2026, 3, 2, 16, tzinfo=ZONE) and state.stall_after == timedelta(hours=4)
    due = datetime(2026, 3, 3, 11, tzinfo=ZONE)  # 2 h on Monday (16-18), 2 h on Tuesday (9-11)
    assert state.stall_due(quiet) == due
    with pytest.raises(NotDueYet) as early:
        clocks.decide(state, stall_check(quiet), due - timedelta(seconds=1))
    assert early.value.due_at == due
    state, [stalled] = apply(state, stall_check(quiet), due + timedelta(minutes=5))
    assert isinstance(stalled, ev.ClockStalled)
    assert (stalled.at, stalled.quiet_since, stalled.quiet_seconds) == (due, quiet, 4 * 3600)
    assert state.stalled_since == quiet
    with pytest.raises(Conflict) as again:  # once per quiet spell, with any number of timer firings
        clocks.decide(state, stall_check(quiet), due + timedelta(hours=1))
    assert again.value.code == "already_stalled"


def test_activity_clears_the_flag_and_starts_a_new_quiet_spell():
    state, _ = apply(None, start(), MON)
    state, _ = apply(state, stall_check(MON), MON + timedelta(days=1))
    later = MON + timedelta(days=1, hours=1)
    state, [cleared] = apply(state, c.NoteActivity(RID, later, "opsat.intake.request.internal_note_added"), later)
    assert isinstance(cleared, ev.StallCleared) and cleared.quiet_since == MON
    assert state.stalled_since is None and state.last_activity_at == later
    with pytest.raises(Conflict) as stale:  # the timer of the old spell no longer applies
        clocks.decide(state, stall_check(MON), later)
    assert stale.value.code == "activity_since"
    with pytest.raises(Conflict):  # nothing to clear when not stalled
        clocks.decide(state, c.NoteActivity(RID, later, "x"), later)
    state, [second] = apply(state, stall_check(later), later + timedelta(days=2))
    assert isinstance(second, ev.ClockStalled) and second.quiet_since == later


def test_a_request_awaiting_the_customer_or_resolved_does_not_stall():
    state, _ = apply(None, start(), MON)
    paused, _ = apply(state, c.PauseClock(RID, MON + timedelta(minutes=5)), MON)
    with pytest.raises(Conflict) as waiting:
        clocks.decide(paused, stall_check(MON + timedelta(minutes=5)), MON + timedelta(days=3))
    assert waiting.value.code == "not_running"
    resolved, _ = apply(state, c.MeetResolution(RID, MON + timedelta(minutes=5)), MON)
    with pytest.raises(Conflict):
        clocks.decide(resolved, stall_check(MON + timedelta(minutes=5)), MON + timedelta(days=3))


def test_a_standing_flag_drops_when_the_work_ends():
    state, _ = apply(None, start(), MON)
    state, _ = apply(state, stall_check(MON), MON + timedelta(days=1))
    resolved, _ = apply(state, c.MeetResolution(RID, MON + timedelta(days=1, hours=1)), MON)
    assert resolved.stalled_since is None


def test_the_stall_span_follows_the_policy_and_a_retarget():
    state, started = apply(None, start("P3"), MON)
    assert started[0].stall_after_seconds == 9 * 3600
    custom = Policy.from_spec("fast", 1, {"first_response_seconds": 60, "resolution_seconds": 600,
                                          "stall_after_seconds": 120, "priorities": ["P1"]})
    state, [retargeted] = apply(state, c.RetargetClock(RID, MON + timedelta(minutes=1), "P1", custom), MON)
    assert retargeted.stall_after_seconds == 120 and state.stall_after == timedelta(seconds=120)
    assert state.stall_due(MON + timedelta(minutes=1)) == MON + timedelta(minutes=3)


def test_a_clock_from_before_stall_rules_reads_the_default_span():
    started = clocks.decide(None, start(), MON)[0].model_copy(update={"stall_after_seconds": None})
    assert clocks.evolve(None, started).stall_after == timedelta(hours=9)


def test_a_malformed_timer_payload_names_the_field():
    state, _ = apply(None, start(), MON)
    for bad in ("yesterday", "2026-03-02T10:00:00"):
        with pytest.raises(InvalidInput) as refused:
            clocks.decide(state, c.CheckStall(RID, bad), MON)
        assert refused.value.field == "quiet_since"


@pytest.mark.parametrize("value", [0, -5, "soon", True])
def test_a_stall_span_must_be_positive_seconds(value):
    with pytest.raises(InvalidInput) as refused:
        Policy.from_spec("x", 1, {"first_response_seconds": 60, "resolution_seconds": 600,
                                  "stall_after_seconds": value})
    assert refused.value.field == "stall_after_seconds"


@pytest.mark.parametrize(("previous_team", "previous_assignee", "team", "assignee", "moved"), [
    (None, None, "net", "alice", False),  # first taken
    ("net", None, "net", "alice", False),  # a first assignee within the team
    ("net", "alice", "net", "alice", False),  # repeated
    ("net", "alice", "net", "bob", True),
    ("net", "alice", "db", "alice", True),
    ("net", None, "db", None, True),
])
def test_a_reassignment_moves_a_request_away_from_a_team_or_person_that_held_it(previous_team, previous_assignee,
                                                                                team, assignee, moved):
    event = HolderAssigned(request_id=RID, at=MON, team=team, assignee=assignee, previous_team=previous_team,
                           previous_assignee=previous_assignee)
    assert is_reassignment(event) is moved
