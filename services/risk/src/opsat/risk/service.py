"""The risk service as the kit builds it: app, worker, topics and `opsat-risk api|worker|migrate|...`."""

from __future__ import annotations

from pathlib import Path

from opsat.common.service import Service
from opsat.risk.api.routes import emergency_router, plan_router, register_router, rota_router, router, rule_router
from opsat.risk.app.handlers import RiskAggregates
from opsat.risk.app.reactions import SignalDriver
from opsat.risk.domain.events import RISK_SERVICE_EVENTS
from opsat.risk.projections.queries import RiskQueries
from opsat.risk.projections.register import RegisterProjection
from opsat.risk.settings import RiskSettings

DESCRIPTION = """Risk control (风险控制): the risk register with 5×5 assessment, automatic risk signals from other
services' events, emergency plans and their response, and on-call rotas.

Risks are identified by hand or raised by signal rules (versioned configuration) over intake's, the SLA
monitor's and feedback's events; a signal re-scores the open risk of its subject instead of duplicating it, and
records the upstream events behind it. A P1 breach or P1 incident (also one raised to P1 by an override)
activates the matching emergency plan once, naming who is on call for each step. Events: `GET /api/v1/events/asyncapi.json`."""

SERVICE = Service(
    name="risk",
    module="opsat.risk.service",
    description=DESCRIPTION,
    settings=RiskSettings,
    events=RISK_SERVICE_EVENTS,
    aggregate=RiskAggregates,
    routers=[register_router, rule_router, plan_router, rota_router, emergency_router, router],
    queries=RiskQueries,
    projections=[RegisterProjection],
    reactions=[SignalDriver],
    consumes=("intake", "sla", "feedback"),
    migrations=Path(__file__).parent / "migrations" / "versions",
)
create_app = SERVICE.create_app
main = SERVICE.main
