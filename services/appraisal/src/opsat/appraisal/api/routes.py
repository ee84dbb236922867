"""Appraisal HTTP API: the KPI catalogue (administrators), appraisal periods (managers run them, engineers
appeal their own cards) and the queries (staff and auditors).

No `from __future__ import annotations` here: FastAPI reads the annotations of the endpoints below.
"""

from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from opsat.appraisal.api import schemas as s
from opsat.appraisal.app.handlers import callers
from opsat.appraisal.domain import catalogues
from opsat.appraisal.domain import commands as c
from opsat.appraisal.projections.queries import AppraisalQueries
from opsat.common.api import read_wait
from opsat.common.auth import require
from opsat.common.commands import CommandRouter, Commands, CreationMeta, Meta, queries
from opsat.common.domain import Actor, Role

READERS = (Role.agent, Role.team_lead, Role.manager, Role.admin, Role.auditor, Role.risk_officer, Role.service)

PeriodId = Annotated[str, Path(min_length=6, max_length=40, pattern=r"^[0-9]{4}-[a-z0-9-]+$",
                               description="its year, a dash and a slug, e.g. 2026-11 or 2026-q4")]
Subject = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\x00/]+$",
                              description="an engineer's id, or team:<name>")]
KpiId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]
Queries = Annotated[AppraisalQueries, Depends(queries)]
Readers = Annotated[Actor, Depends(require(*READERS))]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=100_000)]

period_router = CommandRouter(prefix="/api/v1", tags=["periods"], item_path="/periods/{period_id}",
                              id_param=PeriodId, accepted=s.PeriodAccepted, callers=callers)
period_router.command("adjust", c.AdjustScore, s.AdjustBody,
                      "Adjust one KPI's score on a calculated card, with a written reason (the calculated one is kept)")
period_router.command("publish", c.PublishPeriod, None,
                      "Publish the scorecards; the appeal window opens (publishing twice is 409)")
period_router.command("appeals", c.FileAppeal, s.AppealBody,
                      "Appeal a published score within the window (an engineer their own; a team lead any)")
period_router.command("appeals/review", c.ReviewAppeal, s.ReviewBody,
                      "Uphold or amend an appeal, with a reason (amending re-grades the card)")
period_router.command("close", c.ClosePeriod, None,
                      "Close after the appeal window, with no appeal open: incentives and improvement plans are awarded")

router = APIRouter(prefix="/api/v1")


@router.post("/catalogue/define", tags=["catalogue"], response_model=s.CatalogueAccepted,
             summary="Define the next version of the KPI catalogue (weights sum to 100 %)",
             description="Periods opened afterwards are judged by it; open periods keep theirs. Callers: admin.")
async def define_catalogue(body: s.CatalogueBody, response: Response, commands: Commands, meta: CreationMeta,
                           actor: Annotated[Actor, Depends(require(*callers(c.DefineCatalogue)))]
                           ) -> s.CatalogueAccepted:
    command = c.DefineCatalogue(catalogue_id=catalogues.DEFAULT_ID,
                                kpis=tuple(k.model_dump() for k in body.kpis))
    result = await commands.execute(command, actor, replace(meta, fingerprint=body.model_dump(mode="json")))
    response.headers["ETag"] = f'"{result.version}"'
    return s.CatalogueAccepted(catalogue_id=result.stream_id, version=result.version, position=result.position,
                               event_ids=list(result.event_ids), replayed=result.replayed)


@router.get("/catalogue", tags=["catalogue"], summary="The KPI catalogue, current or at a version",
            responses={404: {"description": "No catalogue has this version"}})
async def get_catalogue(queries: Queries, actor: Readers,
                        version: Annotated[int | None, Query(ge=1, le=10**6)] = None) -> dict[str, Any]:
    catalogue = await queries.catalogue(version)
    return {"version": catalogue.version, **catalogue.to_spec()}


@router.post("/periods/{period_id}/open", tags=["periods"], response_model=s.PeriodAccepted,
             summary="Open an appraisal period (monthly or quarterly) under a catalogue version",
             description="Callers: manager, admin.")
async def open_period(period_id: PeriodId, body: s.OpenBody, response: Response, commands: Commands,
                      meta: CreationMeta, queries: Queries,
                      actor: Annotated[Actor, Depends(require(*callers(c.OpenPeriod)))]) -> s.PeriodAccepted:
    version = body.catalogue_version or (await queries.catalogue()).version
    await queries.catalogue(version)  # 404 for a version that does not exist
    command = c.OpenPeriod(period_id=period_id, cadence=body.cadence, starts_on=body.starts_on,
                           catalogue_version=version, appeal_days=body.appeal_days, time_zone=body.time_zone,
                           grades=body.grades.model_dump() if body.grades else None,
                           incentives=body.incentives.model_dump() if body.incentives else None)
    result = await commands.execute(command, actor, replace(meta, fingerprint=[period_id, body.model_dump(mode="json")]))
    response.headers["Location"] = f"/api/v1/periods/{period_id}"
    return period_router.accepted(result, response)


@router.post("/periods/{period_id}/calculate", tags=["periods"], response_model=s.PeriodAccepted,
             summary="Calculate the scorecards from the facts known now (again until publication)",
             description="Every engineer who resolved a request in the period, and every team, gets a card. "
                         "Callers: manager, admin.")
async def calculate_period(period_id: PeriodId, response: Response, commands: Commands, meta: Meta,
                           queries: Queries, actor: Annotated[Actor, Depends(require(*callers(c.CalculatePeriod)))]
                           ) -> s.PeriodAccepted:
    state = await queries.period_state(period_id)
    cards = tuple(await queries.calculate(state)) if state.status in ("open", "calculated") else ()
    command = c.CalculatePeriod(period_id=period_id, scorecards=cards)
    result = await commands.execute(command, actor, replace(meta, fingerprint=[period_id]))
    return period_router.accepted(result, response)


@router.get("/periods", tags=["periods"], summary="Appraisal periods, newest first")
async def list_periods(queries: Queries, actor: Readers,
                       status: Literal["open", "calculated", "published", "closed"] | None = None,
                       limit: Limit = 50, offset: Offset = 0) -> list[dict[str, Any]]:
    return await queries.periods(status, limit, offset)


@router.get("/periods/{period_id}", tags=["periods"], summary="A period: dates, status, rules, counts")
async def get_period(period_id: PeriodId, queries: Queries, actor: Readers) -> dict[str, Any]:
    return await queries.period(period_id)


@router.get("/periods/{period_id}/scorecards", tags=["scorecards"], summary="Ranking: scorecards, best total first",
            description="Read from the read model. Pass `min_version` (the `version` the calculate command "
                        "returned) to wait briefly until it has that calculation (read-your-writes); "
                        "`X-Opsat-Stale: true` says it has not yet.")
async def ranking(period_id: PeriodId, queries: Queries, actor: Readers, request: Request, response: Response,
                  kind: Literal["engineer", "team"] = "engineer", limit: Limit = 100,
                  offset: Offset = 0, min_version: Annotated[int | None, Query(ge=1)] = None) -> list[dict[str, Any]]:
    if min_version is not None:
        async with read_wait(request, actor) as wait:
            if not await queries.period_reached(period_id, min_version, wait, request.app.state.read_model):
                response.headers["X-Opsat-Stale"] = "true"
    return await queries.ranking(period_id, kind, limit, offset)


@router.get("/periods/{period_id}/scorecards/{subject}", tags=["scorecards"],
            summary="One scorecard: each KPI's value, score, weight and contribution, and pending differences",
            description="`pending_differences` lists KPIs whose facts changed since the calculation (late events); "
                        "they are never folded into a calculated or published card.")
async def scorecard(period_id: PeriodId, subject: Subject, queries: Queries, actor: Readers) -> dict[str, Any]:
    return await queries.scorecard(period_id, subject)


@router.get("/periods/{period_id}/scorecards/{subject}/kpis/{kpi_id}", tags=["scorecards"],
            summary="Drill-down: the facts behind one number and the ids of the events behind each fact")
async def drilldown(period_id: PeriodId, subject: Subject, kpi_id: KpiId, queries: Queries,
                    actor: Readers) -> dict[str, Any]:
    return await queries.drilldown(period_id, subject, kpi_id)


@router.get("/trends/{subject}", tags=["scorecards"], summary="A subject's totals (or one KPI) period by period")
async def trend(subject: Subject, queries: Queries, actor: Readers,
                kpi_id: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z][a-z0-9_]*$")] = None,
                limit: Annotated[int, Query(ge=1, le=60)] = 12) -> list[dict[str, Any]]:
    return await queries.trend(subject, kpi_id, limit)


@router.get("/appeals", tags=["appeals"], summary="The appeal queue (open by default), oldest first")
async def appeal_queue(queries: Queries, actor: Readers,
                       status: Literal["open", "upheld", "amended"] | None = "open",
                       period_id: Annotated[str | None, Query(max_length=40, pattern=r"^[0-9]{4}-[a-z0-9-]+$")] = None,
                       limit: Limit = 100, offset: Offset = 0) -> list[dict[str, Any]]:
    return await queries.appeals(status, period_id, limit, offset)


@router.get("/incentives", tags=["incentives"], summary="The incentive ledger: awards of closed periods")
async def incentive_ledger(queries: Queries, actor: Readers,
                           period_id: Annotated[str | None, Query(max_length=40)] = None,
                           subject: Annotated[str | None, Query(max_length=200)] = None,
                           limit: Limit = 100, offset: Offset = 0) -> list[dict[str, Any]]:
    return await queries.incentives(period_id, subject, limit, offset)


@router.get("/improvement-plans", tags=["incentives"], summary="Improvement plans of D grades (7.4)")
async def plans(queries: Queries, actor: Readers,
                period_id: Annotated[str | None, Query(max_length=40)] = None,
                subject: Annotated[str | None, Query(max_length=200)] = None,
                limit: Limit = 100, offset: Offset = 0) -> list[dict[str, Any]]:
    return await queries.improvement_plans(period_id, subject, limit, offset)
