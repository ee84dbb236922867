"""OLA targets of the team holding a request, pure: counted from when the team took the request, per-team
overrides, paused time excluded, announced once per holding, a hand-over starts the next team's count."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from opsat.common.domain import Conflict, DomainError, InvalidInput, NotDueYet
from opsat.sla_monitor.domain import clocks
from opsat.sla_monitor.domain import commands as c
from opsat.sla_monitor.domain import events as ev
from opsat.sla_monitor.domain.calendars import shipped_version
from opsat.sla_monitor.domain.policies import Policy

T0 = datetime.fromisoformat("2026-03-02T10:00:00+08:00")
RID = "req-1"
OLA = Policy.from_spec("ola", 1, {"first_response_seconds": 60 * 60, "resolution_seconds": 100 * 3600,
                                  "calendar_id": "24x7", "warning_thresholds": [], "escalations": [],
                                  "ola_seconds": 3600, "ola_teams": {"database": 1800}})


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def start(team: str | None = None) -> c.StartClock:
    calendar = shipped_version("24x7")
    assert calendar is not None
    return c.StartClock(request_id=RID, organisation_id="acme", kind="incident", priority="P2",
                        customer_tier="standard", at=T0, policy=OLA, calendar_id="24x7",
                        calendar_version=calendar.version, calendar=calendar.spec, team=team)


def apply(state: clocks.Clock | None, command: object, now: datetime = T0) -> tuple[clocks.Clock, list]:
    events = clocks.decide(state, command, now)
    for event in events:
        state = clocks.evolve(state, event)
    assert state is not None
    return state, events


def test_the_holding_team_has_its_ola_from_when_it_took_the_request_announced_once():
    state, [started] = apply(None, start())
    assert started.ola_seconds == 3600 and started.ola_teams == {"database": 1800}
    assert state.ola_due() is None  # nobody holds it yet
    state, _ = apply(state, c.MeetResponse(RID, at(10), "accepted", team="network"))
    assert state.held_since == at(10) and state.ola_due() == at(70) and state.next_check_at() == at(70)
    with pytest.raises(NotDueYet) as early:
        clocks.decide(state, c.CheckClock(RID), at(69))
    assert early.value.due_at == at(70)
    state, [breached] = apply(state, c.CheckClock(RID), at(75))
    assert isinstance(breached, ev.OlaBreached)
    assert (breached.team, breached.held_since, breached.at, breached.target_seconds) == ("network", at(10), at(70),
                                                                                          3600)
    assert state.next_check_at() == T0 + timedelta(hours=100)  # only the resolution's breach is left
    view = clocks.view(state, at(80))
    assert view["ola"]["breached"] is True and view["ola"]["team"] == "network"


def test_a_hand_over_starts_the_next_teams_own_target_and_pauses_do_not_count():
    state, _ = apply(None, start(team="network"))
    assert state.held_since == T0 and state.ola_due() == at(60)
    state, _ = apply(state, c.ChangeTeam(RID, at(20), "database"))
    assert state.held_since == at(20) and state.ola_due() == at(50)  # database's own 30 minutes
    state, _ = apply(state, c.PauseClock(RID, at(30)))
    state, _ = apply(state, c.ResumeClock(RID, at(45)))
    assert state.ola_due() == at(65)
    state, _ = apply(state, c.MeetResolution(RID, at(60)))
    assert not state.ola_pending


def test_accepting_into_the_team_that_already_holds_it_keeps_the_holding():
    state, _ = apply(None, start(team="network"))
    state, _ = apply(state, c.MeetResponse(RID, at(10), "accepted", team="network"))
    assert state.held_since == T0


@pytest.mark.parametrize(("spec", "field"), [({"ola_seconds": 0}, "ola_seconds"),
                                             ({"ola_teams": {"network": -1}}, "ola_teams"),
                                             ({"ola_teams": ["network"]}, "ola_teams"),
                                             ({"ola_teams": {"": 60}}, "ola_teams")])
def test_ola_targets_must_be_positive_seconds_per_named_team(spec, field):
    with pytest.raises(InvalidInput) as refused:
        Policy.from_spec("x", 1, {"first_response_seconds": 60, "resolution_seconds": 600, **spec})
    assert refused.value.field == field


def test_a_managers_retarget_keeps_who_and_why_and_refuses_without_a_reason_or_a_running_clock():
    state, _ = apply(None, start(team="network"))
    faster = Policy.from_spec("faster", 3, {"first_response_seconds": 60, "resolution_seconds": 7200,
                                            "calendar_id": "24x7"})
    [retargeted] = clocks.decide_policy_change(state, c.ChangeClockPolicy(RID, "faster", "VIP outage", faster),
                                               at(10), "carol")
    assert (retargeted.by, retargeted.reason, retargeted.policy_id, retargeted.policy_version) == \
        ("carol", "VIP outage", "faster", 3)
    assert retargeted.priority == "P2" and retargeted.due["resolution"] == T0 + timedelta(hours=2)
    after = clocks.evolve(state, retargeted)
    with pytest.raises(Conflict):  # already under that version
        clocks.decide_policy_change(after, c.ChangeClockPolicy(RID, "faster", "again", faster), at(11), "carol")
    for bad, field in ((c.ChangeClockPolicy(RID, "faster", "  ", faster), "reason"),
                       (c.ChangeClockPolicy(RID, "nowhere", "why", None), "policy_id")):
        with pytest.raises(DomainError) as refused:
            clocks.decide_policy_change(state, bad, at(10), "carol")
        assert refused.value.field == field
    resolved, _ = apply(state, c.MeetResolution(RID, at(5)))
    with pytest.raises(Conflict):
        clocks.decide_policy_change(resolved, c.ChangeClockPolicy(RID, "faster", "late", faster), at(10), "carol")
