"""The appraisal service as the kit builds it: app, worker, topics and `opsat-appraisal api|worker|...`."""

from __future__ import annotations

from pathlib import Path

from opsat.appraisal.api.routes import period_router, router
from opsat.appraisal.app.handlers import AppraisalAggregates
from opsat.appraisal.domain.events import APPRAISAL_EVENTS
from opsat.appraisal.projections.facts import FactsProjection
from opsat.appraisal.projections.periods import PeriodsProjection
from opsat.appraisal.projections.queries import AppraisalQueries
from opsat.appraisal.settings import AppraisalSettings
from opsat.common.service import Service

DESCRIPTION = """Appraisal and incentives (考核与激励): a versioned KPI catalogue, monthly or quarterly periods,
scorecards for engineers and teams calculated from facts the other services published, manager adjustments,
appeals, grades, incentives and improvement plans.

A period runs open → calculate (again until publication) → adjust (with a reason) → publish → appeal window →
close. Every number on a scorecard drills down to the events behind it. Facts come from intake (who resolved
what, reopened or not), the SLA monitor (targets met on time or late), feedback (answered surveys' scores,
complaints) and risk (risks raised against a team, emergency plans activated).
Events: `GET /api/v1/events/asyncapi.json`."""

SERVICE = Service(
    name="appraisal",
    module="opsat.appraisal.service",
    description=DESCRIPTION,
    settings=AppraisalSettings,
    events=APPRAISAL_EVENTS,
    aggregate=AppraisalAggregates,
    routers=[router, period_router],
    queries=AppraisalQueries,
    projections=[FactsProjection, PeriodsProjection],
    consumes=("intake", "sla", "feedback", "risk"),
    migrations=Path(__file__).parent / "migrations" / "versions",
)
create_app = SERVICE.create_app
main = SERVICE.main
