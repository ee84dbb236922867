"""The SLA monitor as the kit builds it: app, worker, topics and `opsat-sla api|worker|migrate|...`."""

from __future__ import annotations

from pathlib import Path

from opsat.common.service import Service
from opsat.sla_monitor.api.routes import calendar_router, clock_router, outage_router, policy_router, router
from opsat.sla_monitor.app.handlers import SlaAggregates
from opsat.sla_monitor.app.reactions import SLA_CHECK, SLA_STALL, ClockDriver, ClockTimers
from opsat.sla_monitor.domain.commands import CheckClock, CheckStall
from opsat.sla_monitor.domain.events import SLA_EVENTS
from opsat.sla_monitor.projections.queries import SlaQueries
from opsat.sla_monitor.projections.targets import TargetsProjection
from opsat.sla_monitor.settings import SlaSettings

DESCRIPTION = """Service levels (服务级别): business calendars and SLA policies as versioned configuration, and one
explainable clock per service request, driven by intake's events.

Calendars and policies are changed by administrators (`POST .../define`, `.../days`); each change is a new
version, published as an event. Clocks start at submit, are met by accept or a first public reply and by
resolve, pause while the request awaits the customer, and announce warnings, breaches and escalations.
Events: `GET /api/v1/events/asyncapi.json`."""

SERVICE = Service(
    name="sla",
    module="opsat.sla_monitor.service",
    description=DESCRIPTION,
    settings=SlaSettings,
    events=SLA_EVENTS,
    aggregate=SlaAggregates,
    routers=[calendar_router, policy_router, clock_router, outage_router, router],
    queries=SlaQueries,
    projections=[TargetsProjection],
    reactions=[ClockDriver, ClockTimers],
    deadlines={SLA_CHECK: CheckClock, SLA_STALL: CheckStall},
    consumes=("intake",),
    migrations=Path(__file__).parent / "migrations" / "versions",
)
create_app = SERVICE.create_app
main = SERVICE.main
