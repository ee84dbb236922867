"""The `service_facts` projection: intake's reassignments and reopens and the SLA monitor's breaches, per request,
read through tolerant readers, so that satisfaction can be compared with how the request was served."""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from opsat.common.consumer import ReceivedEvent
from opsat.common.reactions import ForeignEvent
from opsat.feedback.projections.tables import metadata, request_service_facts

T = request_service_facts.c


class _ByRequest(ForeignEvent):
    request_id: str


class Assigned(_ByRequest):
    event_type: ClassVar[str] = "opsat.intake.request.assigned"


class Reopened(_ByRequest):
    event_type: ClassVar[str] = "opsat.intake.request.reopened"


class Breached(_ByRequest):
    event_type: ClassVar[str] = "opsat.sla.clock.breached"


class ResolutionMet(_ByRequest):
    event_type: ClassVar[str] = "opsat.sla.clock.resolution_met"
    on_time: bool


INTAKE_FACTS: tuple[type[ForeignEvent], ...] = (Assigned, Reopened)
SLA_FACTS: tuple[type[ForeignEvent], ...] = (Breached, ResolutionMet)


class ServiceFactsProjection:
    name = "service_facts"
    sources = ("intake", "sla")
    metadata = metadata
    handles = (*INTAKE_FACTS, *SLA_FACTS)  # the runner skips the rest of both topics' traffic before any database work

    def __init__(self, *topics: str) -> None:
        self.topics = list(topics)

    async def apply(self, conn: AsyncConnection, received: ReceivedEvent) -> None:
        read = next((cls.read(received) for cls in (*INTAKE_FACTS, *SLA_FACTS) if cls.matches(received)), None)
        if read is None:
            return
        row = insert(request_service_facts).values(request_id=read.request_id)
        match read:
            case Assigned():
                await conn.execute(row.on_conflict_do_update(index_elements=[T.request_id],
                                                             set_={"reassignments": T.reassignments + 1})
                                   .values(reassignments=1))
            case Reopened():
                await conn.execute(row.values(reopened=True).on_conflict_do_update(
                    index_elements=[T.request_id], set_={"reopened": True}))
            case Breached():
                await conn.execute(row.values(sla_breached=True).on_conflict_do_update(
                    index_elements=[T.request_id], set_={"sla_breached": True}))
            case ResolutionMet():
                await conn.execute(row.values(resolution_on_time=read.on_time).on_conflict_do_update(
                    index_elements=[T.request_id], set_={"resolution_on_time": read.on_time}))
