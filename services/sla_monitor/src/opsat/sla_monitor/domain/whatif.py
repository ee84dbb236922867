"""What-if, pure and side-effect free: a clock's recorded history replayed under a draft policy (and
optionally a draft calendar), to compare the verdicts it would have had with those it had.

The replay keeps the instants of what happened in intake (start, response, pauses, resolve, reopen,
team changes) and nothing of the old policy: the draft's targets apply from the start, as if it had been
the policy matched then. Thresholds are not replayed; a target's verdict is read at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from opsat.common.domain import DomainError
from opsat.sla_monitor.domain import clocks
from opsat.sla_monitor.domain import commands as c
from opsat.sla_monitor.domain import events as ev
from opsat.sla_monitor.domain.policies import Policy


def verdicts(state: clocks.Clock, moment: datetime) -> dict[str, str]:
    """Per target: met_on_time | met_late | breached (still running, past due) | running."""
    out = {}
    for name in clocks.TARGETS:
        target = state.targets[name]
        if target.met_at is not None:
            out[name] = "met_on_time" if target.met_on_time else "met_late"
        else:
            out[name] = "breached" if state.elapsed(name, moment) > target.amount else "running"
    return out


def _command(event: ev.ClockEvent) -> Any | None:
    rid = event.request_id
    match event:
        case ev.ResponseMet() if event.how != "resolved":  # a resolve's own response is the resolve's to give
            return c.MeetResponse(rid, event.at, event.how, team=event.team)
        case ev.ClockPaused():
            return c.PauseClock(rid, event.at, event.reason)
        case ev.ClockResumed() if event.reason == "reopened":
            return c.ReopenClock(rid, event.at)
        case ev.ClockResumed() if event.reason != "resolved":
            return c.ResumeClock(rid, event.at, event.reason)
        case ev.ResolutionMet():
            return c.MeetResolution(rid, event.at)
        case ev.TeamChanged():
            return c.ChangeTeam(rid, event.at, event.team)
    return None


def replay(history: Sequence[ev.ClockEvent], policy: Policy, calendar: dict[str, Any] | None,
           moment: datetime) -> clocks.Clock | None:
    """The clock as it would be at `moment` under `policy` (and `calendar`, else the clock's own); None for a
    cancelled request (it counts for no figure)."""
    started = history[0]
    assert isinstance(started, ev.ClockStarted)
    if any(isinstance(e, ev.ClockCancelled) for e in history):
        return None
    start = c.StartClock(request_id=started.request_id, organisation_id=started.organisation_id, kind=started.kind,
                         priority=started.priority, customer_tier=started.customer_tier, at=started.at, policy=policy,
                         calendar_id=started.calendar_id if calendar is None else "draft",
                         calendar_version=started.calendar_version if calendar is None else 0,
                         calendar=started.calendar if calendar is None else calendar, service=started.service,
                         team=started.team)
    state: clocks.Clock | None = None
    for command in [start, *filter(None, (_command(e) for e in history[1:] if e.at <= moment))]:
        try:
            for event in clocks.decide(state, command, moment):
                state = clocks.evolve(state, event)
        except DomainError:  # not applicable under the draft (e.g. met already): as the live clock would refuse
            continue
    return state
