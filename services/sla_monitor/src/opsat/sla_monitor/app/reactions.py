"""What moves the clocks: intake's events (read through a tolerant reader) and the clocks' own timer.

`ClockDriver` turns each relevant intake event into a clock command, with `causationid` = the intake
event and an Idempotency-Key derived from it, so a replayed intake topic changes nothing. `ClockTimers`
reads the clocks' own events and keeps each clock's one deadline at its `next_check_at`: a pause removes
it, a resume sets it to the moved due time.

Every event of a request in intake (but a watcher change) is activity: the driver clears a standing stalled
flag (`NoteActivity`) and moves the request's stall deadline to the clock's `stall_after` of business time
after it, in the same transaction that marks the intake event processed.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from pydantic import AwareDatetime
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.common import deadlines
from opsat.common.commands import CommandMeta
from opsat.common.consumer import ReceivedEvent
from opsat.common.domain import DomainError
from opsat.common.eventstore import StreamStore, fold
from opsat.common.reactions import CommandReaction, ForeignEvent, reaction_metadata
from opsat.sla_monitor.domain import calendars, clocks, policies
from opsat.sla_monitor.domain import commands as c
from opsat.sla_monitor.domain import events as ev

log = logging.getLogger(__name__)

SLA_CHECK = "sla_check"
SLA_STALL = "sla_stall"
REQUEST_EVENTS = "opsat.intake.request."
NOT_ACTIVITY = frozenset({"opsat.intake.request.watcher_added", "opsat.intake.request.watcher_removed"})


# --- the fields the SLA monitor reads of intake's events -------------------------------------------------
class _IntakeEvent(ForeignEvent):
    request_id: str
    at: AwareDatetime


class Submitted(_IntakeEvent):
    event_type: ClassVar[str] = "opsat.intake.request.submitted"
    organisation_id: str
    kind: str
    priority: str
    customer_tier: str = "standard"
    service: str | None = None
    team: str | None = None


class Accepted(_IntakeEvent):
    event_type: ClassVar[str] = "opsat.intake.request.accepted"
    team: str | None = None


class ReplyAdded(_IntakeEvent):
    event_type: ClassVar[str] = "opsat.intake.request.reply_added"
    from_staff: bool


class InfoRequested(_IntakeEvent):
    event_type: ClassVar[str] = "opsat.intake.request.customer_info_requested"


class InfoProvided(_IntakeEvent):
    event_type: ClassVar[str] = "opsat.intake.request.customer_info_provided"


class Resolved(_IntakeEvent):
    event_type: ClassVar[str] = "opsat.intake.request.resolved"


class Reopened(_IntakeEvent):
    event_type: ClassVar[str] = "opsat.intake.request.reopened"


class PriorityChanged(_IntakeEvent):
    event_type: ClassVar[str] = "opsat.intake.request.priority_overridden"
    priority: str


class Assigned(_IntakeEvent):
    event_type: ClassVar[str] = "opsat.intake.request.assigned"
    team: str


class Rejected(_IntakeEvent):
    event_type: ClassVar[str] = "opsat.intake.request.rejected"


class Declined(_IntakeEvent):
    event_type: ClassVar[str] = "opsat.intake.request.declined"


class Cancelled(_IntakeEvent):
    event_type: ClassVar[str] = "opsat.intake.request.cancelled"


class RequestActivity(_IntakeEvent):
    """What the stall rule reads of any of the request's intake events (every one carries both fields)."""

    event_type: ClassVar[str] = "opsat.intake.request.*"

    @classmethod
    def matches(cls, received: ReceivedEvent) -> bool:
        return (received.event_type.startswith(REQUEST_EVENTS) and received.event_type not in NOT_ACTIVITY
                and received.schema_version in cls.versions)


INTAKE_READS: tuple[type[ForeignEvent], ...] = (Submitted, Accepted, ReplyAdded, InfoRequested, InfoProvided,
                                                Resolved, Reopened, PriorityChanged, Assigned, Rejected, Declined,
                                                Cancelled)


async def current_configuration(conn: AsyncConnection, store: StreamStore, kind: str, priority: str, tier: str,
                                service: str | None) -> tuple[policies.Policy, calendars.CalendarVersion]:
    """The policy a new clock gets and the current version of its calendar (shipped ones unless revised)."""
    ids = (await conn.execute(text("select distinct stream_id from events where stream_type = 'sla_policy'"))).scalars()
    book = dict(policies.DEFAULT_POLICIES)
    for policy_id in ids:
        book[policy_id] = fold(policies.evolve, await store.load(policy_id))
    policy = policies.choose(book.values(), kind, priority, tier, service)
    calendar = (fold(calendars.evolve, [r for r in await store.load(policy.calendar_id)
                                        if r.stream_type == "sla_calendar"])
                or calendars.shipped_version(policy.calendar_id)
                or calendars.shipped_version(calendars.DEFAULT_CALENDAR))  # policies name calendars loosely
    assert calendar is not None
    return policy, calendar


class ClockDriver(CommandReaction):
    name: ClassVar[str] = "clock_driver"
    sources: ClassVar[tuple[str, ...]] = ("intake",)
    command: ClassVar[type] = c.StartClock

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        """Looks up the configuration a start or a re-target needs, then issues the command as any reaction."""
        self._configuration: tuple[policies.Policy, calendars.CalendarVersion] | None = None
        assert self.handler is not None, "the service kit sets the handler"
        store = self.handler.store
        activity = RequestActivity.read(received) if RequestActivity.matches(received) else None
        if activity is not None:
            await self._clear_stall(received, activity)
        if Submitted.matches(received):
            submitted = Submitted.read(received)
            self._configuration = await current_configuration(
                conn, store, submitted.kind, submitted.priority, submitted.customer_tier, submitted.service)
        elif PriorityChanged.matches(received):
            changed = PriorityChanged.read(received)
            running = fold(clocks.evolve, await store.load(changed.request_id))
            if running is None:
                return  # no clock (it started before this service existed): nothing to re-target
            self._configuration = await current_configuration(
                conn, store, running.kind, changed.priority, running.customer_tier, running.service)
        await super().apply(conn, received)
        if activity is not None:
            await self._move_stall_deadline(conn, activity)

    async def _clock(self, request_id: str) -> clocks.Clock | None:
        assert self.handler is not None
        history = await self.handler.store.load(request_id)
        return fold(clocks.evolve, history) if history and history[0].stream_type == "sla_clock" else None

    async def _clear_stall(self, received: ReceivedEvent, activity: RequestActivity) -> None:
        """Before the event's own effect, so that the explanation reads: stall cleared by X, then X's effect."""
        assert self.handler is not None
        clock = await self._clock(activity.request_id)
        if clock is None or clock.stalled_since is None:
            return
        meta = CommandMeta(correlation_id=received.correlation_id or received.id, causation_id=received.id,
                           idempotency_key=f"{self.name}:activity:{received.id}", fingerprint=received.id)
        try:
            await self.handler.execute(c.NoteActivity(request_id=activity.request_id, at=activity.at,
                                                      activity=received.event_type), self.actor, meta)
        except DomainError as exc:  # cleared meanwhile (a redelivery): nothing to do
            log.info("clock driver: stall of %s not cleared: %s", activity.request_id, exc.detail)

    async def _move_stall_deadline(self, conn: AsyncConnection, activity: RequestActivity) -> None:
        clock = await self._clock(activity.request_id)
        if clock is None:
            return
        if clock.may_stall:
            quiet_since = max(activity.at, clock.last_activity_at or activity.at)
            await deadlines.schedule(conn, SLA_STALL, activity.request_id, clock.stall_due(quiet_since),
                                     {"quiet_since": quiet_since.isoformat()})
        else:  # awaiting the customer, resolved or cancelled: the next activity that resumes work sets it again
            await deadlines.cancel(conn, SLA_STALL, activity.request_id)

    def command_for(self, received: ReceivedEvent) -> Any | None:
        read = next((cls.read(received) for cls in INTAKE_READS if cls.matches(received)), None)
        match read:
            case Submitted():
                assert self._configuration is not None
                policy, calendar = self._configuration
                return c.StartClock(request_id=read.request_id, organisation_id=read.organisation_id, kind=read.kind,
                                    priority=read.priority, customer_tier=read.customer_tier, at=read.at,
                                    policy=policy, calendar_id=calendar.calendar_id,
                                    calendar_version=calendar.version, calendar=calendar.spec,
                                    service=read.service, team=read.team)
            case Accepted():
                return c.MeetResponse(request_id=read.request_id, at=read.at, how="accepted", team=read.team)
            case ReplyAdded() if read.from_staff:
                return c.MeetResponse(request_id=read.request_id, at=read.at, how="replied")
            case InfoRequested():
                return c.PauseClock(request_id=read.request_id, at=read.at)
            case InfoProvided():
                return c.ResumeClock(request_id=read.request_id, at=read.at)
            case Resolved():
                return c.MeetResolution(request_id=read.request_id, at=read.at)
            case Reopened():
                return c.ReopenClock(request_id=read.request_id, at=read.at)
            case PriorityChanged():
                assert self._configuration is not None
                return c.RetargetClock(request_id=read.request_id, at=read.at, priority=read.priority,
                                       policy=self._configuration[0])
            case Assigned():
                return c.ChangeTeam(request_id=read.request_id, at=read.at, team=read.team)
            case Rejected() | Declined() | Cancelled():
                return c.CancelClock(request_id=read.request_id, at=read.at, reason=received.event_type.rsplit(".")[-1])
        return None


class ClockTimers:
    """Each clock's one deadline follows the `next_check_at` of its latest event (events of one clock arrive
    in order: one partition per stream)."""

    name = "clock_timers"
    sources = ("sla",)
    metadata = reaction_metadata()

    def __init__(self, topic: str) -> None:
        self.topics = [topic]

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        event = received.event
        if not isinstance(event, ev.ClockEvent):
            return
        if event.next_check_at is not None:
            await deadlines.schedule(conn, SLA_CHECK, event.request_id, event.next_check_at)
        else:
            await deadlines.cancel(conn, SLA_CHECK, event.request_id)
