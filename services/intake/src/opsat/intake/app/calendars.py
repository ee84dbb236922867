"""Intake's own copy of the SLA monitor's business calendars, followed from `opsat.sla.events`.

Auto-close counts business days on the latest version of the calendar the organisation's policy follows
(`follows_calendar`, default `cn-default`): an administrator's new holiday reaches intake as an event, with
no call between the services. `followed_calendars` keeps one row per calendar at its highest version (an
older or repeated event never overwrites it); it lives beside the reactions' state, not in the read model,
because the write side reads it and a read-model rebuild must not empty it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import Column, DateTime, Integer, String, Table, select
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from opsat.common.calendar import BusinessCalendar
from opsat.common.consumer import ReceivedEvent
from opsat.common.domain import Instant
from opsat.common.reactions import ForeignEvent, reaction_metadata
from opsat.common.workhours import calendar_from_spec


class _CalendarVersion(ForeignEvent):
    calendar_id: str
    version: int
    calendar: dict[str, Any]  # the whole spec of this version
    at: Instant


class CalendarDefined(_CalendarVersion):
    event_type: ClassVar[str] = "opsat.sla.calendar.defined"


class CalendarDaysAdded(_CalendarVersion):
    event_type: ClassVar[str] = "opsat.sla.calendar.days_added"


SLA_READS: tuple[type[_CalendarVersion], ...] = (CalendarDefined, CalendarDaysAdded)

metadata = reaction_metadata()
followed_calendars = Table(
    "followed_calendars", metadata,
    Column("calendar_id", String, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("spec", JSONB, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)


class CalendarFollower:
    """Each calendar version published by the SLA monitor -> its row in `followed_calendars`."""

    name = "calendar_follower"
    sources = ("sla",)
    metadata = metadata
    handles = SLA_READS

    def __init__(self, topic: str) -> None:
        self.topics = [topic]

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        read = next((cls.read(received) for cls in SLA_READS if cls.matches(received)), None)
        if read is None:
            return
        calendar_from_spec(read.calendar)  # a spec intake cannot read is poison: the runner parks it
        row = {"calendar_id": read.calendar_id, "version": read.version, "spec": read.calendar, "changed_at": read.at}
        upsert = insert(followed_calendars).values(row)
        await conn.execute(upsert.on_conflict_do_update(
            index_elements=["calendar_id"], set_={k: upsert.excluded[k] for k in ("version", "spec", "changed_at")},
            where=followed_calendars.c.version < upsert.excluded.version))


async def latest_calendar(engine: AsyncEngine, calendar_id: str) -> BusinessCalendar | None:
    """The latest followed version of a calendar, for counting business days; None before any is known."""
    async with engine.connect() as conn:
        spec = (await conn.execute(select(followed_calendars.c.spec)
                                   .where(followed_calendars.c.calendar_id == calendar_id))).scalar()
    return calendar_from_spec(spec).to_business_calendar() if spec is not None else None
