"""The `sla_targets` projection: the clocks' own events -> one row per clock and target, and the standing
stalled flags; the outages monitoring reported -> one row per outage (what availability reads); and, from
intake's events (tolerant readers), who holds each request, how its handling went and the time logged
(what the workload board and the first-contact resolution rate read)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import String, bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.common import bulk
from opsat.common.consumer import ReceivedEvent
from opsat.common.domain import Instant
from opsat.common.reactions import ForeignEvent
from opsat.sla_monitor.domain import events as ev
from opsat.sla_monitor.domain.clocks import TARGETS
from opsat.sla_monitor.projections.tables import (
    metadata,
    outages,
    request_work,
    sla_stalls,
    sla_targets,
    time_logs,
)

T = sla_targets.c
W = request_work.c


# --- the fields the workload board reads of intake's events ---------------------------------------------
class _Work(ForeignEvent):
    request_id: str
    at: Instant


class HolderAccepted(_Work):
    event_type: ClassVar[str] = "opsat.intake.request.accepted"
    team: str
    assignee: str | None = None


class HolderAssigned(_Work):
    event_type: ClassVar[str] = "opsat.intake.request.assigned"
    team: str
    assignee: str | None = None
    previous_team: str | None = None
    previous_assignee: str | None = None


class WorkReopened(_Work):
    event_type: ClassVar[str] = "opsat.intake.request.reopened"


class CustomerAsked(_Work):
    event_type: ClassVar[str] = "opsat.intake.request.customer_info_requested"


class TimeLogged(_Work):
    event_type: ClassVar[str] = "opsat.intake.request.time_logged"
    entry_id: str
    by: str
    minutes: int
    work_date: date


WORK_READS: tuple[type[ForeignEvent], ...] = (HolderAccepted, HolderAssigned, WorkReopened, CustomerAsked, TimeLogged)


def is_reassignment(event: HolderAssigned) -> bool:
    """Moved away from a team or a person that held it; a first assignee within the same team is no move."""
    return ((event.previous_team is not None and event.previous_team != event.team)
            or (event.previous_assignee is not None and event.previous_assignee != event.assignee))


# Events that change a request's standing stalled flag (the others leave `sla_stalls` alone).
_STALL_EVENTS = (ev.ClockPaused, ev.ResolutionMet, ev.TeamChanged, ev.ClockCancelled, ev.ClockStalled, ev.StallCleared)


class _Changes:
    """One batch's rows of `sla_targets`, `sla_stalls` and `request_work`, read once, changed in memory event by
    event in arrival order (each event sees the rows as the events before it left them), written once."""

    def __init__(self) -> None:
        self.targets: dict[tuple[str, str], dict[str, Any]] = {}
        self.targets_changed: set[tuple[str, str]] = set()
        self.stalls: dict[str, dict[str, Any] | None] = {}
        self.stalls_touched: set[str] = set()
        self.work: dict[str, dict[str, Any] | None] = {}
        self.work_changed: set[str] = set()
        self.time_logs: dict[str, dict[str, Any]] = {}

    async def load(self, conn: AsyncConnection, clocks: set[str], stalls: set[str], work: set[str]) -> None:
        if clocks:
            for row in (await conn.execute(select(sla_targets).where(T.request_id == func.any(_ids())),
                                           {"ids": sorted(clocks)})).mappings():
                self.targets[(row["request_id"], row["target"])] = dict(row)
        if stalls:
            self.stalls = dict.fromkeys(stalls)
            for row in (await conn.execute(select(sla_stalls).where(sla_stalls.c.request_id == func.any(_ids())),
                                           {"ids": sorted(stalls)})).mappings():
                self.stalls[row["request_id"]] = dict(row)
        if work:
            self.work = dict.fromkeys(work)
            for row in (await conn.execute(select(request_work).where(W.request_id == func.any(_ids())),
                                           {"ids": sorted(work)})).mappings():
                self.work[row["request_id"]] = dict(row)

    async def write(self, conn: AsyncConnection) -> None:
        await bulk.upsert_rows(conn, sla_targets, [self.targets[key] for key in sorted(self.targets_changed)],
                               key=("request_id", "target"))
        if self.stalls_touched:
            touched = sorted(self.stalls_touched)
            await conn.execute(delete(sla_stalls).where(sla_stalls.c.request_id == func.any(_ids())),
                               {"ids": touched})
            await bulk.insert_rows(conn, sla_stalls, [row for rid in touched if (row := self.stalls[rid]) is not None])
        await bulk.upsert_rows(conn, request_work, [self.work[rid] for rid in sorted(self.work_changed)],  # type: ignore[misc]
                               key=("request_id",))
        await bulk.insert_rows(conn, time_logs, list(self.time_logs.values()), on_conflict_do_nothing=True)

    # --- sla_targets ------------------------------------------------------------------------------------
    def change(self, rid: str, target: str | None, at: datetime, when: Callable[[dict[str, Any]], bool] | None = None,
               **values: Any) -> None:
        """Like `update sla_targets set ..., updated_at = at where request_id = rid [and target] [and when]`."""
        for name in (target,) if target is not None else TARGETS:
            row = self.targets.get((rid, name))
            if row is None or (when is not None and not when(row)):
                continue
            row.update(values, updated_at=at)
            self.targets_changed.add((rid, name))

    def start(self, event: ev.ClockStarted) -> None:
        for name in TARGETS:  # a clock already there stays as it is (a redelivered start)
            if (event.request_id, name) in self.targets:
                continue
            self.targets[(event.request_id, name)] = {
                "request_id": event.request_id, "target": name, "organisation_id": event.organisation_id,
                "kind": event.kind, "priority": event.priority, "customer_tier": event.customer_tier,
                "service": event.service, "team": event.team, "policy_id": event.policy_id,
                "policy_version": event.policy_version, "calendar_id": event.calendar_id, "status": "running",
                "started_at": event.at, "due_at": event.due[name], "met_at": None, "on_time": None,
                "warned_percent": None, "breached_at": None, "escalated_to": None, "excusal": None,
                "updated_at": event.at}
            self.targets_changed.add((event.request_id, name))

    def escalate(self, event: ev.ThresholdReached | ev.TargetBreached, **values: Any) -> None:
        row = self.targets.get((event.request_id, event.target))
        if row is None:
            return
        if isinstance(event, ev.ThresholdReached):
            values["warned_percent"] = max(row["warned_percent"] or 0, event.percent)
        self.change(event.request_id, event.target, event.at, escalated_to=event.escalate_to or row["escalated_to"],
                    **values)

    # --- sla_stalls -------------------------------------------------------------------------------------
    def unflag(self, rid: str) -> None:
        self.stalls[rid] = None
        self.stalls_touched.add(rid)

    def flag(self, event: ev.ClockStalled) -> None:
        """Like `insert ... select` from the clock's resolution row, `on conflict do nothing`."""
        rid = event.request_id
        row = self.targets.get((rid, "resolution"))
        if self.stalls[rid] is not None or row is None:
            return
        self.stalls[rid] = {"request_id": rid, "organisation_id": row["organisation_id"], "team": row["team"],
                            "priority": row["priority"], "kind": row["kind"], "service": row["service"],
                            "quiet_since": event.quiet_since, "stalled_at": event.at,
                            "quiet_seconds": event.quiet_seconds}
        self.stalls_touched.add(rid)

    def stall_team(self, rid: str, team: str) -> None:
        row = self.stalls[rid]
        if row is not None:
            self.stalls[rid] = {**row, "team": team}
            self.stalls_touched.add(rid)

    # --- request_work and time_logs ---------------------------------------------------------------------
    def hold(self, rid: str, at: datetime, **values: Any) -> dict[str, Any]:
        """Like `insert into request_work ... on conflict (request_id) do update`: the row, created if absent."""
        row = self.work[rid]
        if row is None:
            row = self.work[rid] = {"request_id": rid, "team": None, "assignee": None, "reassignments": 0,
                                    "reopens": 0, "customer_waits": 0, "updated_at": at}
        row.update(values, updated_at=at)
        self.work_changed.add(rid)
        return row


def _ids() -> Any:
    return bindparam("ids", type_=ARRAY(String))


class TargetsProjection:
    """A consumer batch at a time (`apply` is a batch of one, the runner's way to find a poison event): the
    rows the batch's events concern are read with one query per table, changed in memory in arrival order,
    and written with one statement per table; live and rebuild run this same code."""

    name = "sla_targets"
    metadata = metadata

    sources = ("sla", "intake")
    # What apply_batch reads: the runner skips the rest (intake's replies, notes, submits; calendars and policies)
    # before any database work, instead of a transaction per poll that holds none of these.
    handles = (*ev.CLOCK_EVENTS, *ev.OUTAGE_EVENTS, *WORK_READS)

    def __init__(self, *topics: str) -> None:
        self.topics = list(topics)

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        await self.apply_batch(conn, [received])

    async def apply_batch(self, conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> None:
        reads: list[ev.ClockEvent | ev.OutageReported | ev.OutageEnded | ForeignEvent] = []
        clocks: set[str] = set()
        stalls: set[str] = set()
        work: set[str] = set()
        for received in events:
            event = received.event
            if event is None:  # another service's event
                read = next((cls.read(received) for cls in WORK_READS if cls.matches(received)), None)
                if read is not None:
                    reads.append(read)
                    work.add(read.request_id)  # type: ignore[attr-defined]
            elif isinstance(event, ev.ClockEvent | ev.OutageReported | ev.OutageEnded):
                reads.append(event)
                if isinstance(event, ev.ClockEvent):
                    clocks.add(event.request_id)
                    if isinstance(event, _STALL_EVENTS):
                        stalls.add(event.request_id)
        if not reads:
            return
        changes = _Changes()
        await changes.load(conn, clocks, stalls, work)
        for read in reads:
            if isinstance(read, ev.OutageReported | ev.OutageEnded):  # rare, and no other event touches outages
                await self._apply_outage(conn, read)
            elif isinstance(read, ev.ClockEvent):
                _apply_clock(changes, read)
            else:
                _apply_work(changes, read)
        await changes.write(conn)

    @staticmethod
    async def _apply_outage(conn: AsyncConnection, event: ev.OutageReported | ev.OutageEnded) -> None:
        if isinstance(event, ev.OutageReported):
            await conn.execute(insert(outages).values(
                outage_id=event.outage_id, service=event.service, severity=event.severity,
                started_at=event.started_at, ended_at=event.ended_at).on_conflict_do_nothing())
        else:
            await conn.execute(update(outages).where(outages.c.outage_id == event.outage_id)
                               .values(ended_at=event.ended_at))


def _running(row: dict[str, Any]) -> bool:
    return row["status"] == "running"


def _paused(row: dict[str, Any]) -> bool:
    return row["status"] == "paused"


def _not_met(row: dict[str, Any]) -> bool:
    return row["status"] != "met"


def _apply_clock(changes: _Changes, event: ev.ClockEvent) -> None:
    rid, at, change = event.request_id, event.at, changes.change
    match event:
        case ev.ClockStarted():
            changes.start(event)
        case ev.ResponseMet():
            change(rid, "response", at, status="met", met_at=at, on_time=event.on_time)
            if event.team:
                change(rid, None, at, team=event.team)
        case ev.ClockPaused():
            change(rid, None, at, _running, status="paused")
            changes.unflag(rid)  # awaiting the customer is no stall (the clock dropped the flag too)
        case ev.ClockResumed():
            if event.reason == "reopened":
                change(rid, "resolution", at, status="running", met_at=None, on_time=None)
            change(rid, None, at, _paused, status="running")
            for name, due in event.due.items():
                change(rid, name, at, due_at=due)
        case ev.ResolutionMet():
            change(rid, "resolution", at, status="met", met_at=at, on_time=event.on_time)
            changes.unflag(rid)
        case ev.ThresholdReached():
            changes.escalate(event)
        case ev.TargetBreached():
            changes.escalate(event, breached_at=at)
        case ev.ClockEscalated():
            change(rid, event.target, at, escalated_to=event.escalate_to)
        case ev.ClockRetargeted():
            change(rid, None, at, priority=event.priority, policy_id=event.policy_id,
                   policy_version=event.policy_version)
            for name, due in event.due.items():
                change(rid, name, at, due_at=due)
        case ev.TeamChanged():
            change(rid, None, at, team=event.team)
            changes.stall_team(rid, event.team)
        case ev.ClockCancelled():
            change(rid, None, at, _not_met, status="cancelled")
            changes.unflag(rid)
        case ev.ClockStalled():
            changes.flag(event)
        case ev.StallCleared():
            changes.unflag(rid)
        case ev.ExcusalRequested():
            change(rid, event.target, at, excusal="requested")
        case ev.ExcusalApproved():
            change(rid, event.target, at, excusal="approved")
        case ev.ExcusalRejected():
            change(rid, event.target, at, excusal="rejected")


def _apply_work(changes: _Changes, read: ForeignEvent) -> None:
    rid = read.request_id  # type: ignore[attr-defined]
    at = read.at  # type: ignore[attr-defined]
    match read:
        case HolderAccepted():
            changes.hold(rid, at, team=read.team, assignee=read.assignee)
        case HolderAssigned():
            before = changes.work[rid]
            moved = int(is_reassignment(read)) + (before["reassignments"] if before is not None else 0)
            changes.hold(rid, at, team=read.team, assignee=read.assignee, reassignments=moved)
        case WorkReopened() | CustomerAsked():
            column = "reopens" if isinstance(read, WorkReopened) else "customer_waits"
            before = changes.work[rid]
            changes.hold(rid, at, **{column: (before[column] if before is not None else 0) + 1})
        case TimeLogged():
            holder = changes.work[rid]
            changes.time_logs.setdefault(read.entry_id, {  # the first of an entry stays (on conflict do nothing)
                "entry_id": read.entry_id, "request_id": rid, "engineer": read.by,
                "team": holder["team"] if holder is not None else None, "minutes": read.minutes,
                "work_date": read.work_date})
