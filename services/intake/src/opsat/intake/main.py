"""The intake API process: `create_app(settings)`; nothing is built at import time."""

from __future__ import annotations

from fastapi import FastAPI

from opsat.common.api import create_service_app
from opsat.common.envelope import EventRegistry
from opsat.intake.api.routes import router
from opsat.intake.app.handlers import IntakeHandlers, PolicyBook
from opsat.intake.domain.events import INTAKE_EVENTS
from opsat.intake.projections.queries import IntakeQueries
from opsat.intake.settings import IntakeSettings

DESCRIPTION = """Service requests (服务请求 / 工单) and their whole life:
submitted → accepted → in_progress ⇄ awaiting_customer → resolved → closed, plus rejected, cancelled and reopened.

Commands are `POST`s that answer the request's new `version`; queries are `GET`s served from read models
that follow the event stream (pass `min_version` to read your own write). Errors are RFC 9457 problem+json.
Events: `GET /api/v1/events/asyncapi.json`."""


def registry() -> EventRegistry:
    return EventRegistry("intake", INTAKE_EVENTS)


def create_app(settings: IntakeSettings | None = None, **overrides) -> FastAPI:  # type: ignore[no-untyped-def]
    settings = settings or IntakeSettings()
    policies = PolicyBook(settings.intake_policy, settings.intake_policy_by_org)

    async def wire(app: FastAPI) -> None:
        app.state.handlers = IntakeHandlers(app.state.store, policies, **overrides)
        app.state.queries = IntakeQueries(app.state.engine)

    return create_service_app(settings=settings, title="opsat intake", description=DESCRIPTION,
                              registry=registry(), routers=[router], on_startup=wire)
