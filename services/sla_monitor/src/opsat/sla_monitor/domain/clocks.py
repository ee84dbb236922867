"""An SLA clock: one per request, an event stream whose every change names its cause.

Business time counts on the calendar version the clock started with. Time awaiting the customer, and
time between resolve and reopen, is paused: it is added to every due time, so a pause of N business
seconds moves each due time by exactly N business seconds. Thresholds (warnings, breach at 100 %,
escalation levels) are announced once each, by the timer, when their due time has passed.

Stalled (DOMAIN 3.4): a running, unpaused request with no activity for the policy's `stall_after` of
business time is flagged once per quiet spell (`ClockStalled`); the next activity clears the flag
(`StallCleared`). Activity is any of the request's intake events; those that move the clock are also
the clock's own `last_activity_at`, the others reach it only through the stall timer's `quiet_since`.

Next reply (periodic update, optional per policy): from the first response (and from a reopen) until
resolve, each public staff reply is an update (`UpdateGiven`); when `next_reply` of business time (paused
time excluded) passes without one, the timer announces `UpdateOverdue` once for that gap.

OLA (optional per policy): the team holding the request (from submit, accept or a reassignment) has its
OLA target of business time (paused time excluded) from when it took the request; the timer announces
`OlaBreached` once per holding if the request is neither resolved nor handed over by then.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from opsat.common.domain import AlreadyExists, Conflict, DomainEvent, Forbidden, InvalidInput, NotDueYet, NotFound
from opsat.common.workhours import WorkCalendar, calendar_from_spec
from opsat.sla_monitor.domain import commands as c
from opsat.sla_monitor.domain import events as ev
from opsat.sla_monitor.domain.policies import DEFAULT_STALL_SECONDS, Policy

TARGETS = ("response", "resolution")


def _replace(obj: Any, /, **changes: Any) -> Any:
    """`dataclasses.replace` for the clock's frozen dataclasses without running `__init__` again: a clock has
    some thirty fields, an event changes a few, and replays fold many events (a fifth of a clock update's CPU)."""
    fields = obj.__dataclass_fields__
    unknown = [name for name in changes if name not in fields]
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field {unknown[0]!r}")
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__, **changes)
    return new
BREACH = 100


@dataclass(frozen=True)
class Target:
    amount: timedelta
    met_at: datetime | None = None
    met_due: datetime | None = None  # the due time when met (later pauses do not move a met target)
    met_on_time: bool | None = None  # the verdict when met
    reached: frozenset[int] = frozenset()  # percents already announced
    excusal: Excusal | None = None  # of a breach


@dataclass(frozen=True)
class Excusal:
    status: str  # requested | approved | rejected
    cause: str
    requested_by: str
    request_reason: str
    decided_by: str | None = None
    decision_reason: str | None = None


@dataclass(frozen=True)
class Clock:
    request_id: str
    organisation_id: str
    kind: str
    priority: str
    customer_tier: str
    service: str | None
    team: str | None
    policy_id: str
    policy_version: int
    calendar_id: str
    calendar_version: int
    calendar: WorkCalendar
    started_at: datetime
    targets: dict[str, Target]
    warning_thresholds: tuple[int, ...]
    escalations: dict[int, str]
    paused: timedelta = timedelta(0)  # business time of finished pauses
    paused_since: datetime | None = None  # awaiting the customer
    resolved_at: datetime | None = None
    cancelled: bool = False
    stall_after: timedelta = timedelta(seconds=DEFAULT_STALL_SECONDS)
    last_activity_at: datetime | None = None  # of the intake events that moved the clock
    stalled_since: datetime | None = None  # the quiet spell a standing stall flag is about
    next_reply: timedelta | None = None
    last_update_at: datetime | None = None  # the first response, a reopen or the latest update since
    update_paused_base: timedelta = timedelta(0)  # paused business time counted by `last_update_at`
    update_overdue_since: datetime | None = None  # the `last_update_at` whose gap was announced

    ola: timedelta | None = None
    ola_teams: dict[str, timedelta] = field(default_factory=dict)
    held_since: datetime | None = None  # when the current team took the request
    held_paused_base: timedelta = timedelta(0)
    ola_breached_for: tuple[str, datetime] | None = None  # the holding whose breach was announced

    def ola_target(self) -> timedelta | None:
        return self.ola_teams.get(self.team, self.ola) if self.team else None

    def ola_due(self) -> datetime | None:
        amount = self.ola_target()
        if amount is None or self.held_since is None:
            return None
        return self.calendar.add(self.held_since, amount + self.paused - self.held_paused_base)

    @property
    def ola_pending(self) -> bool:
        return (self.ola_due() is not None and not self.cancelled and self.running("resolution")
                and self.ola_breached_for != (self.team, self.held_since))

    def _held_by(self, team: str | None, at: datetime) -> Clock:
        if not team or team == self.team:
            return self
        return _replace(self, team=team, held_since=at, held_paused_base=self.paused_until(at))

    def update_due(self) -> datetime | None:
        if self.next_reply is None or self.last_update_at is None:
            return None
        return self.calendar.add(self.last_update_at, self.next_reply + self.paused - self.update_paused_base)

    @property
    def update_pending(self) -> bool:
        return (self.update_due() is not None and not self.cancelled and self.running("resolution")
                and self.update_overdue_since != self.last_update_at)

    def _updated(self, at: datetime) -> Clock:
        return _replace(self, last_update_at=at, update_paused_base=self.paused_until(at))

    def stall_due(self, quiet_since: datetime) -> datetime:
        return self.calendar.add(quiet_since, self.stall_after)

    @property
    def may_stall(self) -> bool:
        """Only a request being worked on stalls: not one awaiting the customer, resolved or cancelled."""
        return not self.cancelled and self.paused_since is None and self.running("resolution")

    # --- reading the clock ----------------------------------------------------------------------------
    @property
    def marks(self) -> list[int]:
        return sorted({*self.warning_thresholds, BREACH, *self.escalations})

    def running(self, name: str) -> bool:
        return not self.cancelled and self.targets[name].met_at is None

    def due(self, name: str, percent: int = BREACH) -> datetime:
        """When `percent` of the target is used up, if the clock runs from now on (paused time so far added)."""
        amount = self.targets[name].amount * percent / 100 + self.paused
        return self.calendar.add(self.started_at, amount)

    def paused_until(self, moment: datetime) -> timedelta:
        ongoing = self.calendar.between(self.paused_since, moment) if self.paused_since else timedelta(0)
        return self.paused + max(ongoing, timedelta(0))

    def elapsed(self, name: str, moment: datetime) -> timedelta:
        end = self.targets[name].met_at or moment
        return self.calendar.between(self.started_at, end) - self.paused_until(end)

    def next_check_at(self) -> datetime | None:
        if self.cancelled or self.paused_since is not None:
            return None
        # A higher mark falls due later: each running target's first unannounced mark is its next check.
        pending = [self.due(name, min(unannounced)) for name in TARGETS if self.running(name)
                   if (unannounced := [p for p in self.marks if p not in self.targets[name].reached])]
        update_due, ola_due = self.update_due(), self.ola_due()
        if self.update_pending and update_due is not None:
            pending.append(update_due)
        if self.ola_pending and ola_due is not None:
            pending.append(ola_due)
        return min(pending, default=None)

    @property
    def status(self) -> str:
        if self.cancelled:
            return "cancelled"
        if self.paused_since is not None:
            return "paused"
        return "running" if any(self.running(n) for n in TARGETS) else "met"

    def _with_target(self, name: str, **changes: Any) -> Clock:
        return _replace(self, targets={**self.targets, name: _replace(self.targets[name], **changes)})


# Clock events caused by one of the request's intake events: activity on the request.
_ACTIVITY = (ev.ClockStarted, ev.ResponseMet, ev.ClockPaused, ev.ClockResumed, ev.ResolutionMet, ev.ClockRetargeted,
             ev.TeamChanged, ev.ClockCancelled, ev.StallCleared, ev.UpdateGiven)


def _optional(seconds: float | None) -> timedelta | None:
    return timedelta(seconds=seconds) if seconds is not None else None


def _teams(targets: dict[str, float]) -> dict[str, timedelta]:
    return {team: timedelta(seconds=seconds) for team, seconds in targets.items()}


def _stall_after(seconds: float | None) -> timedelta:
    return timedelta(seconds=seconds if seconds is not None else DEFAULT_STALL_SECONDS)


# The states the latest decision folded its own events into: (id of the state before, id of the stamped event)
# -> (state before, event, state after). The command handler applies a decision's events to the stream again
# (`evolve` per event): with this it gets the states the decision computed instead of doing the business-time
# arithmetic twice. Identity-keyed and holding its keys' objects (ids cannot be reused while here); one
# decision's worth; `evolve` stays a function of its arguments.
_decided: dict[tuple[int, int], tuple[Clock | None, DomainEvent, Clock]] = {}


def evolve(state: Clock | None, event: DomainEvent) -> Clock:
    known = _decided.get((id(state), id(event)))
    if known is not None and known[0] is state and known[1] is event:
        return known[2]
    after = _evolve(state, event)
    changes: dict[str, Any] = {}
    if isinstance(event, _ACTIVITY) and (after.last_activity_at is None or event.at > after.last_activity_at):
        changes["last_activity_at"] = event.at
    if after.stalled_since is not None and not after.may_stall:  # a stall ends with the work (resolve, cancel)
        changes["stalled_since"] = None
    return _replace(after, **changes) if changes else after


def _evolve(state: Clock | None, event: DomainEvent) -> Clock:
    if isinstance(event, ev.ClockStarted):
        return Clock(
            request_id=event.request_id, organisation_id=event.organisation_id, kind=event.kind,
            priority=event.priority, customer_tier=event.customer_tier, service=event.service, team=event.team,
            policy_id=event.policy_id, policy_version=event.policy_version, calendar_id=event.calendar_id,
            calendar_version=event.calendar_version, calendar=calendar_from_spec(event.calendar),
            started_at=event.at, targets={n: Target(timedelta(seconds=s)) for n, s in event.targets.items()},
            warning_thresholds=tuple(event.warning_thresholds),
            escalations={e["percent"]: e["role"] for e in event.escalations},
            stall_after=_stall_after(event.stall_after_seconds), next_reply=_optional(event.next_reply_seconds),
            ola=_optional(event.ola_seconds), ola_teams=_teams(event.ola_teams),
            held_since=event.at if event.team else None)
    if state is None:  # configuration and clocks share one namespace of streams: a calendar is no clock
        raise NotFound(f"no SLA clock for {getattr(event, 'calendar_id', getattr(event, 'policy_id', '?'))}",
                       field="request_id")
    match event:
        case ev.ResponseMet():
            state = state._with_target("response", met_at=event.at, met_due=state.due("response"),
                                       met_on_time=event.on_time)
            return state._held_by(event.team, event.at)._updated(event.at)
        case ev.UpdateGiven():
            return state._updated(event.at)
        case ev.UpdateOverdue():
            return _replace(state, update_overdue_since=event.since)
        case ev.ClockPaused():
            return _replace(state, paused_since=event.at)
        case ev.ClockResumed():
            state = _replace(state, paused=state.paused + timedelta(seconds=event.paused_seconds), paused_since=None)
            if event.reason == "reopened":
                state = _replace(state._with_target("resolution", met_at=None, met_due=None, met_on_time=None),
                                resolved_at=None)
                if state.last_update_at is not None:  # updates are owed again from the reopen
                    state = state._updated(event.at)
            return state
        case ev.ResolutionMet():
            return _replace(state._with_target("resolution", met_at=event.at, met_due=state.due("resolution"),
                                              met_on_time=event.on_time), resolved_at=event.at)
        case ev.ThresholdReached() | ev.ClockEscalated():
            return state._with_target(event.target, reached=state.targets[event.target].reached | {event.percent})
        case ev.TargetBreached():
            return state._with_target(event.target, reached=state.targets[event.target].reached | {BREACH})
        case ev.ClockRetargeted():
            targets = {n: _replace(t, amount=timedelta(seconds=event.targets[n])) for n, t in state.targets.items()}
            return _replace(state, priority=event.priority, policy_id=event.policy_id,
                           policy_version=event.policy_version, targets=targets,
                           warning_thresholds=tuple(event.warning_thresholds),
                           escalations={e["percent"]: e["role"] for e in event.escalations},
                           stall_after=_stall_after(event.stall_after_seconds),
                           next_reply=_optional(event.next_reply_seconds), ola=_optional(event.ola_seconds),
                           ola_teams=_teams(event.ola_teams))
        case ev.OlaBreached():
            return _replace(state, ola_breached_for=(event.team, event.held_since))
        case ev.ClockStalled():
            return _replace(state, stalled_since=event.quiet_since)
        case ev.StallCleared():
            return _replace(state, stalled_since=None)
        case ev.TeamChanged():
            return state._held_by(event.team, event.at)
        case ev.ClockCancelled():
            return _replace(state, cancelled=True)
        case ev.ExcusalRequested():
            return state._with_target(event.target, excusal=Excusal("requested", event.cause, event.by, event.reason))
        case ev.ExcusalApproved() | ev.ExcusalRejected():
            asked = state.targets[event.target].excusal
            assert asked is not None, "a decision follows a request"
            status = "approved" if isinstance(event, ev.ExcusalApproved) else "rejected"
            return state._with_target(event.target, excusal=_replace(asked, status=status, decided_by=event.by,
                                                                     decision_reason=event.reason))
    raise ValueError(f"not a clock event: {event.event_type}")


EXCUSAL_CAUSES = ("customer", "third_party")
_MAX_REASON = 2000


def _reason(text: str) -> str:
    if not isinstance(text, str) or not text.strip() or len(text) > _MAX_REASON or "\x00" in text:
        raise InvalidInput(f"give a reason (1 to {_MAX_REASON} characters)", field="reason")
    return text.strip()


def _breached_target(state: Clock, name: str) -> Target:
    if name not in TARGETS:
        raise InvalidInput(f"target is one of {', '.join(TARGETS)}", field="target")
    target = state.targets[name]
    if BREACH not in target.reached:
        raise Conflict(f"the {name} target is not breached: there is nothing to excuse", code="not_breached")
    return target


def decide_excusal(state: Clock | None, command: Any, now: datetime, by: str) -> list[ev.ClockEvent]:
    """Request, approve or reject the excusal of a breach; the approver is never the one who asked."""
    if state is None:
        raise NotFound(f"no clock for request {command.request_id}", field="request_id")
    target = _breached_target(state, command.target)
    rid, name = command.request_id, command.target
    match command:
        case c.RequestExcusal():
            if command.cause not in EXCUSAL_CAUSES:
                raise InvalidInput(f"cause is one of {', '.join(EXCUSAL_CAUSES)}", field="cause")
            reason = _reason(command.reason)
            if target.excusal is not None and target.excusal.status != "rejected":
                raise Conflict(f"the excusal of this breach is already {target.excusal.status}",
                               code=f"excusal_{target.excusal.status}")
            return _finish(state, [ev.ExcusalRequested(request_id=rid, at=now, target=name, cause=command.cause,
                                                       reason=reason, by=by)])
        case c.ApproveExcusal() | c.RejectExcusal():
            reason = _reason(command.reason)
            if target.excusal is None or target.excusal.status != "requested":
                raise Conflict("no excusal of this breach awaits a decision", code="no_excusal_requested")
            if target.excusal.requested_by == by:
                raise Forbidden("nobody decides on their own request for an excusal")
            event_cls = ev.ExcusalApproved if isinstance(command, c.ApproveExcusal) else ev.ExcusalRejected
            return _finish(state, [event_cls(request_id=rid, at=now, target=name, reason=reason, by=by)])
    raise TypeError(f"no excusal rule for {type(command).__name__}")


def decide(state: Clock | None, command: Any, now: datetime) -> list[ev.ClockEvent]:
    if isinstance(command, c.StartClock):
        if state is not None:
            raise AlreadyExists(f"the clock of {command.request_id} is running", field="request_id")
        return _finish(None, [_start(command)])
    if state is None:
        raise NotFound(f"no clock for request {command.request_id}", field="request_id")
    if state.cancelled:
        raise Conflict("the clock was cancelled", code="clock_cancelled")
    rid = command.request_id
    match command:
        case c.MeetResponse():
            if not state.running("response") and command.how == "replied" and state.next_reply is not None \
                    and state.running("resolution"):
                given = ev.UpdateGiven(request_id=rid, at=command.at, next_due_at=command.at)
                after = evolve(state, given)
                assert after.update_due() is not None
                return _finish(state, [given.model_copy(update={"next_due_at": after.update_due()})])
            if not state.running("response"):
                if command.team and command.team != state.team:  # accepted after a reply met it: the team counts
                    return _finish(state, [ev.TeamChanged(request_id=rid, at=command.at, team=command.team)])
                raise Conflict("the response target is already met", code="already_met")
            on_time = state.elapsed("response", command.at) <= state.targets["response"].amount
            return _finish(state, [ev.ResponseMet(request_id=rid, at=command.at, on_time=on_time, how=command.how,
                                                  team=command.team)])
        case c.PauseClock():
            if state.paused_since is not None or not state.running("resolution"):
                raise Conflict("the clock is not running", code="not_running")
            return _finish(state, [ev.ClockPaused(request_id=rid, at=command.at, reason=command.reason)])
        case c.ResumeClock():
            if state.paused_since is None:
                raise Conflict("the clock is not paused", code="not_paused")
            return _finish(state, [_resume(state, state.paused_since, command.at, command.reason)])
        case c.MeetResolution():
            if not state.running("resolution"):
                raise Conflict("the resolution target is already met", code="already_met")
            events: list[ev.ClockEvent] = []
            if state.paused_since is not None:
                events.append(_resume(state, state.paused_since, command.at, "resolved"))
            if state.running("response"):  # resolving answers the customer too
                on_time = state.elapsed("response", command.at) <= state.targets["response"].amount
                events.append(ev.ResponseMet(request_id=rid, at=command.at, on_time=on_time, how="resolved"))
            after = _fold(state, events)
            on_time = after.elapsed("resolution", command.at) <= after.targets["resolution"].amount
            events.append(ev.ResolutionMet(request_id=rid, at=command.at, on_time=on_time))
            return _finish(state, events)
        case c.ReopenClock():
            if state.resolved_at is None:
                raise Conflict("the request is not resolved", code="not_resolved")
            return _finish(state, [_resume(state, state.resolved_at, command.at, "reopened")])
        case c.RetargetClock():
            return _retarget(state, command.at, command.priority, command.policy)
        case c.ChangeTeam():
            if command.team == state.team:
                raise Conflict("the team is unchanged", code="unchanged")
            return _finish(state, [ev.TeamChanged(request_id=rid, at=command.at, team=command.team)])
        case c.CancelClock():
            return _finish(state, [ev.ClockCancelled(request_id=rid, at=command.at, reason=command.reason)])
        case c.CheckClock():
            return _check(state, now)
        case c.CheckStall():
            return _check_stall(state, command, now)
        case c.NoteActivity():
            if state.stalled_since is None:
                raise Conflict("the request is not flagged as stalled", code="not_stalled")
            return _finish(state, [ev.StallCleared(request_id=rid, at=command.at, quiet_since=state.stalled_since,
                                                   activity=command.activity)])
    raise TypeError(f"no clock rule for {type(command).__name__}")


def _retarget(state: Clock, at: datetime, priority: str, policy: Policy, by: str | None = None,
              reason: str | None = None) -> list[ev.ClockEvent]:
    if (priority, policy.policy_id, policy.version) == (state.priority, state.policy_id, state.policy_version):
        raise Conflict("the clock already runs under this priority and policy", code="unchanged")
    amounts = {"response": policy.first_response.total_seconds(), "resolution": policy.resolution.total_seconds()}
    retargeted = ev.ClockRetargeted(
        request_id=state.request_id, at=at, priority=priority, policy_id=policy.policy_id,
        policy_version=policy.version, targets=amounts, warning_thresholds=list(policy.warning_thresholds),
        escalations=[{"percent": p, "role": r} for p, r in policy.escalations], due={},
        stall_after_seconds=policy.stall_after.total_seconds(), next_reply_seconds=_seconds(policy.next_reply),
        ola_seconds=_seconds(policy.ola), ola_teams={t: a.total_seconds() for t, a in policy.ola_teams},
        by=by, reason=reason)
    after = evolve(state, retargeted)
    return _finish(state, [retargeted.model_copy(update={"due": {n: after.due(n) for n in TARGETS}})])


def decide_policy_change(state: Clock | None, command: c.ChangeClockPolicy, now: datetime,
                         by: str) -> list[ev.ClockEvent]:
    """A manager's audited re-target of a running clock: the request's priority stays, the policy changes."""
    if state is None:
        raise NotFound(f"no clock for request {command.request_id}", field="request_id")
    reason = _reason(command.reason)
    if command.policy is None:
        raise NotFound(f"policy {command.policy_id} not found", field="policy_id")
    if state.cancelled or not state.running("resolution"):
        raise Conflict("only a running clock is re-targeted", code="not_running")
    return _retarget(state, now, state.priority, command.policy, by=by, reason=reason)


def _start(command: c.StartClock) -> ev.ClockStarted:
    policy = command.policy
    calendar = calendar_from_spec(command.calendar)
    amounts = {"response": policy.first_response, "resolution": policy.resolution}
    return ev.ClockStarted(
        request_id=command.request_id, at=command.at, organisation_id=command.organisation_id, kind=command.kind,
        priority=command.priority, customer_tier=command.customer_tier, service=command.service, team=command.team,
        policy_id=policy.policy_id, policy_version=policy.version, calendar_id=command.calendar_id,
        calendar_version=command.calendar_version, calendar=command.calendar,
        targets={n: a.total_seconds() for n, a in amounts.items()},
        warning_thresholds=list(policy.warning_thresholds),
        escalations=[{"percent": p, "role": r} for p, r in policy.escalations],
        due={n: calendar.add(command.at, a) for n, a in amounts.items()},
        stall_after_seconds=policy.stall_after.total_seconds(), next_reply_seconds=_seconds(policy.next_reply),
        ola_seconds=_seconds(policy.ola), ola_teams={t: a.total_seconds() for t, a in policy.ola_teams})


def _seconds(amount: timedelta | None) -> float | None:
    return amount.total_seconds() if amount is not None else None


def _resume(state: Clock, since: datetime, at: datetime, reason: str) -> ev.ClockResumed:
    paused = max(state.calendar.between(since, at), timedelta(0))
    resumed = ev.ClockResumed(request_id=state.request_id, at=at, reason=reason,
                              paused_seconds=paused.total_seconds(), due={})
    after = evolve(state, resumed)
    return resumed.model_copy(update={"due": {n: after.due(n) for n in TARGETS if after.running(n)}})


def _check_stall(state: Clock, command: c.CheckStall, now: datetime) -> list[ev.ClockEvent]:
    try:
        quiet_since = datetime.fromisoformat(command.quiet_since)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("quiet_since must be an ISO 8601 instant", field="quiet_since") from exc
    if quiet_since.tzinfo is None:
        raise InvalidInput("quiet_since needs an offset", field="quiet_since")
    if not state.may_stall:
        raise Conflict("the request is not being worked on (awaiting the customer, resolved or cancelled)",
                       code="not_running")
    if state.last_activity_at is not None and quiet_since < state.last_activity_at:
        raise Conflict("there was activity after this quiet spell began", code="activity_since")
    if state.stalled_since is not None:
        raise Conflict("the request is already flagged as stalled", code="already_stalled")
    due = state.stall_due(quiet_since)
    if due > now:
        raise NotDueYet(f"the request stalls at {due.isoformat()} without activity", due_at=due)
    return _finish(state, [ev.ClockStalled(request_id=state.request_id, at=due, quiet_since=quiet_since,
                                           quiet_seconds=state.stall_after.total_seconds(), team=state.team)])


def _check(state: Clock, now: datetime) -> list[ev.ClockEvent]:
    """Every mark whose due time has passed, in the order they fell due."""
    if state.paused_since is not None:
        raise Conflict("the clock is paused", code="paused")
    crossed = sorted((state.due(n, p), TARGETS.index(n), p, n) for n in TARGETS if state.running(n)
                     for p in state.marks if p not in state.targets[n].reached and state.due(n, p) <= now)
    update_due, ola_due = state.update_due(), state.ola_due()
    overdue = state.update_pending and update_due is not None and update_due <= now
    ola_breached = state.ola_pending and ola_due is not None and ola_due <= now
    if not crossed and not overdue and not ola_breached:
        upcoming = state.next_check_at()
        if upcoming is None:
            raise Conflict("no threshold is pending", code="nothing_pending")
        raise NotDueYet(f"the next threshold falls due at {upcoming.isoformat()}", due_at=upcoming)
    events: list[ev.ClockEvent] = []
    for due_at, _, percent, name in crossed:
        role = state.escalations.get(percent)
        rid = state.request_id
        if percent == BREACH:
            events.append(ev.TargetBreached(request_id=rid, at=due_at, target=name, due_at=due_at, escalate_to=role))
        elif percent in state.warning_thresholds:
            events.append(ev.ThresholdReached(request_id=rid, at=due_at, target=name, percent=percent, due_at=due_at,
                                              escalate_to=role))
        else:
            events.append(ev.ClockEscalated(request_id=rid, at=due_at, target=name, percent=percent,
                                            escalate_to=role or "unassigned"))
    if overdue:
        assert update_due is not None and state.last_update_at is not None
        events.append(ev.UpdateOverdue(request_id=state.request_id, at=update_due, since=state.last_update_at,
                                       due_at=update_due, team=state.team))
    if ola_breached:
        amount = state.ola_target()
        assert ola_due is not None and amount is not None and state.team and state.held_since
        events.append(ev.OlaBreached(request_id=state.request_id, at=ola_due, team=state.team,
                                     held_since=state.held_since, due_at=ola_due,
                                     target_seconds=amount.total_seconds()))
    if overdue or ola_breached:
        events.sort(key=lambda e: e.at)
    return _finish(state, events)


def _fold(state: Clock | None, events: list[ev.ClockEvent]) -> Clock:
    for event in events:
        state = evolve(state, event)
    assert state is not None
    return state


def _finish(state: Clock | None, events: list[ev.ClockEvent]) -> list[ev.ClockEvent]:
    """Stamp every event of one decision with the clock's next check after all of them (which `evolve` does not
    read: the states folded here are those of the stamped events, remembered for the handler's fold)."""
    states = [state]
    for event in events:
        states.append(evolve(states[-1], event))
    after = states[-1]
    assert after is not None
    upcoming = after.next_check_at()
    stamped = [e.model_copy(update={"next_check_at": upcoming}) for e in events]
    _decided.clear()
    for before, event, folded in zip(states[:-1], stamped, states[1:], strict=True):
        _decided[(id(before), id(event))] = (before, event, folded)  # type: ignore[assignment]
    return stamped


def view(state: Clock, now: datetime) -> dict[str, Any]:
    """The clock as the state query shows it at `now`: targets, due times, remaining and paused business time."""
    targets = {}
    for name in TARGETS:
        target = state.targets[name]
        elapsed = state.elapsed(name, now)
        # A met target keeps the verdict it was met with (pauses after it do not change it).
        late = (target.met_on_time is False) if target.met_at else elapsed > target.amount
        breached = BREACH in target.reached or late
        targets[name] = {
            "target_seconds": target.amount.total_seconds(), "due_at": target.met_due or state.due(name),
            "met_at": target.met_at, "status": "met" if target.met_at else ("running" if state.running(name)
                                                                              else "stopped"),
            "on_time": (not breached) if target.met_at else None, "breached": breached,
            "elapsed_seconds": elapsed.total_seconds(),
            "remaining_seconds": (target.amount - elapsed).total_seconds(),
            "thresholds_reached": sorted(target.reached),
            "excusal": asdict(target.excusal) if target.excusal else None}
    return {"request_id": state.request_id, "status": state.status, "organisation_id": state.organisation_id,
            "kind": state.kind, "priority": state.priority, "customer_tier": state.customer_tier,
            "service": state.service, "team": state.team, "started_at": state.started_at,
            "policy": {"policy_id": state.policy_id, "version": state.policy_version},
            "calendar": {"calendar_id": state.calendar_id, "version": state.calendar_version},
            "paused": state.paused_since is not None, "paused_since": state.paused_since,
            "paused_seconds": state.paused_until(now).total_seconds(), "targets": targets,
            "stall_after_seconds": state.stall_after.total_seconds(), "last_activity_at": state.last_activity_at,
            "stalled": state.stalled_since is not None, "stalled_quiet_since": state.stalled_since,
            "next_reply": None if state.next_reply is None else {
                "target_seconds": state.next_reply.total_seconds(), "last_update_at": state.last_update_at,
                "due_at": state.update_due() if state.running("resolution") and not state.cancelled else None,
                "overdue": state.update_overdue_since is not None
                and state.update_overdue_since == state.last_update_at},
            "ola": None if state.ola_target() is None else {
                "team": state.team, "held_since": state.held_since,
                "target_seconds": state.ola_target().total_seconds(),  # type: ignore[union-attr]
                "due_at": state.ola_due(), "breached": state.ola_breached_for == (state.team, state.held_since)},
            "next_check_at": state.next_check_at()}
