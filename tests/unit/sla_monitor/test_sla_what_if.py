"""What-if, pure: a clock's history replayed under a draft policy or calendar keeps the instants of what
happened (pauses included) and gives the verdicts the draft would have given."""

from __future__ import annotations

from datetime import datetime, timedelta

from opsat.sla_monitor.domain import clocks, whatif
from opsat.sla_monitor.domain import commands as c
from opsat.sla_monitor.domain.calendars import shipped_version
from opsat.sla_monitor.domain.policies import Policy

T0 = datetime.fromisoformat("2026-03-02T10:00:00+08:00")  # a Monday
RID = "req-1"


def policy(response_minutes: float, resolution_minutes: float, calendar: str = "24x7") -> Policy:
    return Policy.from_spec("p", 1, {"first_response_seconds": response_minutes * 60,
                                     "resolution_seconds": resolution_minutes * 60, "calendar_id": calendar})


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def live_history(live_policy: Policy, *commands: object) -> tuple[clocks.Clock, list]:
    calendar = shipped_version("24x7")
    assert calendar is not None
    start = c.StartClock(request_id=RID, organisation_id="acme", kind="incident", priority="P2",
                         customer_tier="standard", at=T0, policy=live_policy, calendar_id="24x7",
                         calendar_version=1, calendar=calendar.spec)
    state, history = None, []
    for command in (start, *commands):
        for event in clocks.decide(state, command, at(1000)):
            state = clocks.evolve(state, event)
            history.append(event)
    assert state is not None
    return state, history


def test_a_tighter_draft_turns_an_on_time_resolution_late_and_pauses_still_count_out():
    live, history = live_history(policy(30, 120), c.MeetResponse(RID, at(10), "accepted"),
                                 c.PauseClock(RID, at(20)), c.ResumeClock(RID, at(80)),
                                 c.MeetResolution(RID, at(140)))
    now = at(1000)
    assert whatif.verdicts(live, now) == {"response": "met_on_time", "resolution": "met_on_time"}  # 80 of 120
    tight = whatif.replay(history, policy(5, 90), None, now)
    assert tight is not None
    assert whatif.verdicts(tight, now) == {"response": "met_late", "resolution": "met_on_time"}  # 80 of 90
    tighter = whatif.replay(history, policy(15, 60), None, now)
    assert tighter is not None and tighter.paused == timedelta(minutes=60)
    assert whatif.verdicts(tighter, now) == {"response": "met_on_time", "resolution": "met_late"}


def test_a_draft_calendar_counts_only_its_working_time():
    live, history = live_history(policy(30, 600), c.MeetResponse(RID, at(10), "accepted"),
                                 c.MeetResolution(RID, at(600)))
    office = {"time_zone": "Asia/Shanghai", "hours": {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu",
                                                                                          "fri")}}
    replayed = whatif.replay(history, policy(30, 480, "office"), office, at(1000))
    assert replayed is not None and replayed.calendar_id == "draft"
    # 10:00 to 20:00: 8 business hours on the office calendar, 10 wall-clock hours
    assert whatif.verdicts(replayed, at(1000))["resolution"] == "met_on_time"
    assert whatif.verdicts(live, at(1000))["resolution"] == "met_on_time"
    strict = whatif.replay(history, policy(30, 480), None, at(1000))
    assert strict is not None and whatif.verdicts(strict, at(1000))["resolution"] == "met_late"


def test_a_reopened_request_is_replayed_with_its_reopen_and_a_running_one_is_judged_now():
    _, history = live_history(policy(30, 120), c.MeetResponse(RID, at(5), "accepted"), c.MeetResolution(RID, at(30)),
                              c.ReopenClock(RID, at(90)))
    replayed = whatif.replay(history, policy(30, 60), None, at(200))
    assert replayed is not None and replayed.running("resolution") and replayed.paused == timedelta(minutes=60)
    assert whatif.verdicts(replayed, at(100)) == {"response": "met_on_time", "resolution": "running"}
    assert whatif.verdicts(replayed, at(200))["resolution"] == "breached"  # 30 + 110 minutes worked > 60


def test_a_cancelled_request_is_not_replayed():
    _, history = live_history(policy(30, 120), c.CancelClock(RID, at(5), "cancelled"))
    assert whatif.replay(history, policy(1, 1), None, at(10)) is None
