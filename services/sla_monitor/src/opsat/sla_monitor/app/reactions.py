"""What moves the clocks: intake's events (read through a tolerant reader) and the clocks' own timer.

`ClockDriver` turns each relevant intake event into a clock command, with `causationid` = the intake
event, written in the transaction that marks the event processed, so a replayed intake topic changes nothing. `ClockTimers`
reads the clocks' own events and keeps each clock's one deadline at its `next_check_at`: a pause removes
it, a resume sets it to the moved due time.

Every event of a request in intake (but a watcher change) is activity: the driver clears a standing stalled
flag (`NoteActivity`) and moves the request's stall deadline to the clock's `stall_after` of business time
after it, in the same transaction that marks the intake event processed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.common import deadlines
from opsat.common.commands import CommandBatch
from opsat.common.consumer import ReceivedEvent
from opsat.common.domain import DomainError, Instant
from opsat.common.eventstore import EventStore, fold
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
    at: Instant


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
_READER_OF = {cls.event_type: cls for cls in INTAKE_READS}


_CONFIGURATION = text(
    "select position, stream_id, stream_type, version, event_id, event_type, schema_version, data, metadata,"
    " recorded_at from events where stream_type in ('sla_policy', 'sla_calendar') order by stream_id, version"
).columns(data=JSONB, metadata=JSONB)  # read through a partial index (migration 0005), however many clocks


@dataclass(frozen=True)
class Configuration:
    """The policies and calendars in force: administrators' versions over the shipped ones."""

    policies: dict[str, policies.Policy]
    calendars: dict[str, calendars.CalendarVersion]
    _chosen: dict[tuple[str, str, str, str | None], tuple[policies.Policy, calendars.CalendarVersion]] = field(
        default_factory=dict, compare=False)  # a batch asks for the same few combinations again and again

    def for_clock(self, kind: str, priority: str, tier: str, service: str | None
                  ) -> tuple[policies.Policy, calendars.CalendarVersion]:
        """The policy a new clock gets and the current version of its calendar (shipped ones unless revised)."""
        key = (kind, priority, tier, service)
        if key not in self._chosen:
            policy = policies.choose(self.policies.values(), kind, priority, tier, service)
            calendar = (self.calendars.get(policy.calendar_id) or calendars.shipped_version(policy.calendar_id)
                        or calendars.shipped_version(calendars.DEFAULT_CALENDAR))  # policies name calendars loosely
            assert calendar is not None
            self._chosen[key] = (policy, calendar)
        return self._chosen[key]


async def load_configuration(conn: AsyncConnection, store: EventStore) -> Configuration:
    streams: dict[tuple[str, str], list[Any]] = {}
    for row in await conn.execute(_CONFIGURATION):
        streams.setdefault((row.stream_type, row.stream_id), []).append(store._recorded(row))
    book = dict(policies.DEFAULT_POLICIES)
    revised: dict[str, calendars.CalendarVersion] = {}
    for (stream_type, stream_id), history in streams.items():
        if stream_type == "sla_policy":
            book[stream_id] = fold(policies.evolve, history)
        else:
            revised[stream_id] = fold(calendars.evolve, history)
    return Configuration(book, revised)


async def current_configuration(conn: AsyncConnection, store: EventStore, kind: str, priority: str, tier: str,
                                service: str | None) -> tuple[policies.Policy, calendars.CalendarVersion]:
    """The policy and calendar a clock started now gets."""
    return (await load_configuration(conn, store)).for_clock(kind, priority, tier, service)


class ClockDriver(CommandReaction):
    """A consumer batch of intake events at a time (`apply` is a batch of one): the clocks of the batch's
    requests are read in one query, each event's commands are decided in arrival order on the clock as the
    events before it left it, and all are written with one statement in the transaction that marks the
    batch processed; then each request's stall deadline follows its clock."""

    name: ClassVar[str] = "clock_driver"
    sources: ClassVar[tuple[str, ...]] = ("intake",)
    command: ClassVar[type] = c.StartClock

    def command_for(self, received: ReceivedEvent) -> Any | None:
        return None  # the commands depend on the clock and the configuration: `apply_batch` issues them

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        await self.apply_batch(conn, [received])

    async def apply_batch(self, conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> None:
        assert self.handler is not None, "the service kit sets the handler"
        reads = []
        for received in events:
            reader = _READER_OF.get(received.event_type)
            read = reader.read(received) if reader is not None and reader.matches(received) else None
            activity = None
            if RequestActivity.matches(received):  # every reader's fields include the activity's: read once
                activity = read if read is not None else RequestActivity.read(received)
            if read is not None or activity is not None:
                reads.append((received, read, activity))
        if not reads:
            return
        batch = self.handler.batch(conn)
        await batch.load({(activity or read).request_id for _, read, activity in reads})  # type: ignore[union-attr]
        configuration = None
        if any(isinstance(read, Submitted | PriorityChanged) for _, read, _ in reads):
            assert isinstance(self.handler.store, EventStore)
            configuration = await load_configuration(conn, self.handler.store)
        active: dict[str, _IntakeEvent] = {}  # each request's latest activity in the batch (its request_id, at)
        for received, read, activity in reads:
            if activity is not None:
                active[activity.request_id] = activity
                clock = self._clock(batch, activity.request_id)
                if clock is not None and clock.stalled_since is not None:  # cleared before the event's own effect
                    await self._issue(batch, received, c.NoteActivity(
                        request_id=activity.request_id, at=activity.at, activity=received.event_type))
            if read is not None:
                command = self._command(received, read, self._clock(batch, read.request_id), configuration)
                if command is not None:
                    await self._issue(batch, received, command)
        await batch.commit()
        await self._move_stall_deadlines(conn, batch, active)

    async def _issue(self, batch: CommandBatch, received: ReceivedEvent, command: Any) -> None:
        outcome = await batch.execute(command, self.actor, self.meta(received))
        if isinstance(outcome, DomainError):  # e.g. a redelivered event's effect is there: a decision, not a failure
            log.info("clock driver: %s refused for event %s: %s", type(command).__name__, received.id, outcome.detail)

    def _clock(self, batch: CommandBatch, request_id: str) -> clocks.Clock | None:
        """The request's clock as the batch's commands so far left it; None if it has none (or the id names a
        calendar or a policy)."""
        history = batch.history(request_id)
        if history and history[0].stream_type != "sla_clock":
            return None
        assert self.handler is not None
        return batch.state(self.handler.aggregate_for(c.StartClock), request_id)

    async def _move_stall_deadlines(self, conn: AsyncConnection, batch: CommandBatch,
                                    active: dict[str, _IntakeEvent]) -> None:
        due: list[tuple[str, Any, dict[str, Any]]] = []
        idle: list[str] = []
        for request_id, activity in active.items():
            clock = self._clock(batch, request_id)
            if clock is None:
                continue
            if clock.may_stall:
                quiet_since = max(activity.at, clock.last_activity_at or activity.at)
                due.append((request_id, clock.stall_due(quiet_since), {"quiet_since": quiet_since.isoformat()}))
            else:  # awaiting the customer, resolved or cancelled: the next activity that resumes work sets it again
                idle.append(request_id)
        await deadlines.schedule_many(conn, SLA_STALL, due)
        await deadlines.cancel_many(conn, SLA_STALL, idle)

    @staticmethod
    def _command(received: ReceivedEvent, read: ForeignEvent, clock: clocks.Clock | None,
                 configuration: Configuration | None) -> Any | None:
        match read:
            case Submitted():
                assert configuration is not None
                policy, calendar = configuration.for_clock(read.kind, read.priority, read.customer_tier, read.service)
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
                if clock is None:
                    return None  # no clock (it started before this service existed): nothing to re-target
                assert configuration is not None
                policy, _ = configuration.for_clock(clock.kind, read.priority, clock.customer_tier, clock.service)
                return c.RetargetClock(request_id=read.request_id, at=read.at, priority=read.priority, policy=policy)
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
    handles = tuple(cls for cls in ev.SLA_EVENTS if issubclass(cls, ev.ClockEvent))  # not calendars, policies…

    def __init__(self, topic: str) -> None:
        self.topics = [topic]

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        await self.apply_batch(conn, [received])

    async def apply_batch(self, conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> None:
        """Only each clock's latest event of the batch counts: the others' deadlines would be moved at once."""
        latest: dict[str, ev.ClockEvent] = {}
        for received in events:
            if isinstance(received.event, ev.ClockEvent):
                latest[received.event.request_id] = received.event
        await deadlines.schedule_many(conn, SLA_CHECK, [(request_id, event.next_check_at, {}) for request_id, event
                                                        in latest.items() if event.next_check_at is not None])
        await deadlines.cancel_many(conn, SLA_CHECK, [request_id for request_id, event in latest.items()
                                                      if event.next_check_at is None])
