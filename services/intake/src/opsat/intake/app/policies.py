"""Reactions to intake's own events that are not read models: scheduling the auto-close deadline.

Runs as its own consumer group, with its processed ids in the `reactions` schema: a rebuild and swap
of the read model must not make it schedule (or forget) anything twice.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.common import deadlines
from opsat.common.consumer import ReceivedEvent
from opsat.common.reactions import reaction_metadata
from opsat.intake.domain import events as ev

AUTO_CLOSE = "auto_close"


class AutoCloseScheduler:
    """RequestResolved sets the auto-close deadline; anything that ends or reopens it removes it."""

    name = "auto_close_scheduler"
    sources = ("intake",)
    metadata = reaction_metadata()
    handles = (ev.RequestResolved, ev.RequestClosed, ev.RequestReopened, ev.RequestCancelled)

    def __init__(self, topic: str) -> None:
        self.topics = [topic]

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        event = received.event
        if isinstance(event, ev.RequestResolved):
            await deadlines.schedule(conn, AUTO_CLOSE, event.request_id, event.auto_close_due_at)
        elif isinstance(event, (ev.RequestClosed, ev.RequestReopened, ev.RequestCancelled)):
            await deadlines.cancel(conn, AUTO_CLOSE, event.request_id)
