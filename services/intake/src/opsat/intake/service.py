"""The intake service as the kit builds it: app, worker, topics and `opsat-intake api|worker|migrate|...`."""

from __future__ import annotations

from pathlib import Path

from opsat.common.service import Service
from opsat.intake.api.routes import router
from opsat.intake.app.calendars import CalendarFollower
from opsat.intake.app.handlers import RequestAggregate
from opsat.intake.app.policies import AUTO_CLOSE, AutoCloseScheduler
from opsat.intake.domain.commands import AutoCloseRequest
from opsat.intake.domain.events import INTAKE_EVENTS
from opsat.intake.projections.queries import IntakeQueries
from opsat.intake.projections.requests import RequestsProjection
from opsat.intake.settings import IntakeSettings

DESCRIPTION = """Service requests (服务请求 / 工单) and their whole life:
submitted → accepted → in_progress ⇄ awaiting_customer → resolved → closed, plus rejected, cancelled and reopened.

Commands are `POST`s that answer the request's new `version`; queries are `GET`s served from read models
that follow the event stream (pass `min_version` to read your own write). Errors are RFC 9457 problem+json.
Events: `GET /api/v1/events/asyncapi.json`."""

SERVICE = Service(
    name="intake",
    description=DESCRIPTION,
    settings=IntakeSettings,
    events=INTAKE_EVENTS,
    aggregate=RequestAggregate,
    routers=[router],
    queries=IntakeQueries,
    projections=[RequestsProjection],
    reactions=[AutoCloseScheduler, CalendarFollower],
    deadlines={AUTO_CLOSE: AutoCloseRequest},
    consumes=("sla",),  # the SLA monitor's calendars, for auto-close
    migrations=Path(__file__).parent / "migrations" / "versions",
)
create_app = SERVICE.create_app
main = SERVICE.main
