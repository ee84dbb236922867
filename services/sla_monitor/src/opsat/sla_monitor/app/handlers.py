"""The SLA monitor's aggregates as the kit's command handler sees them: calendars, policies and clocks,
three kinds of stream in one service (`AggregateSet`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from opsat.common.commands import AggregateSet
from opsat.common.domain import Actor, CommandContext, DomainEvent, Forbidden, Role
from opsat.common.eventstore import StreamStore, fold
from opsat.sla_monitor.domain import calendars, clocks, outages, policies
from opsat.sla_monitor.domain import commands as c

CONFIG_CALLERS = (Role.admin,)
# A breach is excused only through a request by staff and a manager's approval (never the requester's own).
EXCUSAL_CALLERS: dict[type, tuple[Role, ...]] = {
    c.RequestExcusal: (Role.agent, Role.team_lead, Role.manager),
    c.ApproveExcusal: (Role.manager,),
    c.RejectExcusal: (Role.manager,),
}
# A manager re-targets a running clock under another policy (audited: who and why stay in the explanation).
STAFF_CALLERS: dict[type, tuple[Role, ...]] = {**EXCUSAL_CALLERS, c.ChangeClockPolicy: (Role.manager,)}


def callers(command_cls: type) -> Sequence[Role]:
    """Who may issue a routed command: configuration is the administrators', excusals are staff's."""
    if command_cls in (c.ReportOutage, c.EndOutage):
        return (Role.service,)
    return STAFF_CALLERS.get(command_cls, CONFIG_CALLERS)


class _ConfigAggregate:
    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def tenant(self, state: Any, command: Any, actor: Actor) -> str:
        return actor.organisation

    def _check_caller(self, ctx: CommandContext) -> None:
        if not ctx.actor.has(*CONFIG_CALLERS):
            raise Forbidden("configuration is changed by administrators")


class CalendarAggregate(_ConfigAggregate):
    stream_type = "sla_calendar"
    id_field = "calendar_id"
    commands = frozenset({c.DefineCalendar, c.AddCalendarDays})
    evolve = staticmethod(calendars.evolve)

    def decide(self, state: Any, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        self._check_caller(ctx)
        return calendars.decide(state, command, ctx.now, ctx.actor.id)


class PolicyAggregate(_ConfigAggregate):
    stream_type = "sla_policy"
    id_field = "policy_id"
    commands = frozenset({c.DefinePolicy})
    evolve = staticmethod(policies.evolve)

    def decide(self, state: Any, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        self._check_caller(ctx)
        return policies.decide(state, command, ctx.now, ctx.actor.id)


class ClockAggregate:
    stream_type = "sla_clock"
    id_field = "request_id"
    commands = frozenset({c.StartClock, c.MeetResponse, c.PauseClock, c.ResumeClock, c.MeetResolution,
                          c.ReopenClock, c.RetargetClock, c.ChangeTeam, c.CancelClock, c.CheckClock, c.CheckStall,
                          c.NoteActivity,
                          *STAFF_CALLERS})
    evolve = staticmethod(clocks.evolve)

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def tenant(self, state: clocks.Clock | None, command: Any, actor: Actor) -> str:
        return state.organisation_id if state is not None else command.organisation_id

    async def prepare(self, command: Any, state: clocks.Clock | None, store: StreamStore) -> Any:
        """A manager's re-target names a policy: its current version (an administrator's, or the shipped one)."""
        if not isinstance(command, c.ChangeClockPolicy) or not policies.CONFIG_ID.match(command.policy_id):
            return command
        history = [r for r in await store.load(command.policy_id) if r.stream_type == "sla_policy"]
        policy = fold(policies.evolve, history) or policies.DEFAULT_POLICIES.get(command.policy_id)
        return replace(command, policy=policy)

    def decide(self, state: clocks.Clock | None, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        staff_callers = STAFF_CALLERS.get(type(command))
        if staff_callers is not None:
            if not (ctx.actor.is_staff and ctx.actor.has(*staff_callers)):
                raise Forbidden(f"{type(command).__name__} is for {', '.join(r.value for r in staff_callers)}")
            if isinstance(command, c.ChangeClockPolicy):
                return list(clocks.decide_policy_change(state, command, ctx.now, ctx.actor.id))
            return list(clocks.decide_excusal(state, command, ctx.now, ctx.actor.id))
        if not ctx.actor.has(Role.service):  # clocks move only by intake's events and their timer
            raise Forbidden("clocks are driven by events, not by people")
        return list(clocks.decide(state, command, ctx.now))


class OutageAggregate:
    stream_type = "sla_outage"
    id_field = "outage_id"
    commands = frozenset({c.ReportOutage, c.EndOutage})
    evolve = staticmethod(outages.evolve)

    def __init__(self, settings: Any) -> None:
        self.services = dict(settings.business_services)

    def tenant(self, state: Any, command: Any, actor: Actor) -> str:
        return actor.organisation

    def decide(self, state: outages.Outage | None, command: Any, ctx: CommandContext) -> list[DomainEvent]:
        if not ctx.actor.has(Role.service):
            raise Forbidden("outages are reported by monitoring (a service account)")
        return outages.decide(state, command, ctx.now, ctx.actor.id, self.services)


class SlaAggregates(AggregateSet):
    members = (CalendarAggregate, PolicyAggregate, ClockAggregate, OutageAggregate)
