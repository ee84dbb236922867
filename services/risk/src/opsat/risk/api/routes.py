"""Risk service HTTP API: the register, configuration (signal rules, emergency plans, on-call rotas),
emergencies, and the queries.

Staff and auditors read everything; only the roles in `app.handlers.CALLERS` change anything (auditors
never). No `from __future__ import annotations` here: FastAPI reads the annotations of the endpoints below.
"""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from opsat.common.auth import require
from opsat.common.commands import CommandRouter, Commands, CreationMeta, queries
from opsat.common.domain import Actor, InvalidInput, Role
from opsat.common.ids import new_id
from opsat.risk.api import schemas as s
from opsat.risk.app import configuration
from opsat.risk.app.handlers import callers
from opsat.risk.domain import commands as c
from opsat.risk.projections.queries import RiskFilters, RiskQueries

READERS = (Role.agent, Role.team_lead, Role.manager, Role.risk_officer, Role.auditor, Role.admin, Role.service)

RiskId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
EmergencyId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
ConfigId = Annotated[str, Path(min_length=1, max_length=41, pattern=r"^[a-z0-9][a-z0-9-]*$")]
Filter = Annotated[str | None, Query(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
Queries = Annotated[RiskQueries, Depends(queries)]
Readers = Annotated[Actor, Depends(require(*READERS))]

register_router = CommandRouter(prefix="/api/v1", tags=["risks"], item_path="/risks/{risk_id}", id_param=RiskId,
                                accepted=s.RiskAccepted, callers=callers)
register_router.command("assess", c.AssessRisk, s.AssessBody,
                        "Assess or reassess a risk: likelihood 1-5 × impact 1-5 (every assessment is kept)")
register_router.command("mitigation", c.PlanMitigation, s.MitigationBody,
                        "Plan the mitigation with its due date (the risk is then mitigating)")
register_router.command("progress", c.RecordProgress, s.ProgressBody, "Record the mitigation's progress (0-100 %)")
register_router.command("accept", c.AcceptRisk, s.AcceptBody,
                        "Accept the (residual) risk: it leaves the open register (risk officers only)")
register_router.command("close", c.CloseRisk, s.CloseBody, "Close the risk: mitigated, or no longer relevant")

rule_router = CommandRouter(prefix="/api/v1", tags=["configuration"], item_path="/rules/{rule_id}", id_param=ConfigId,
                            accepted=s.RuleAccepted, callers=callers)
rule_router.command("define", c.DefineRule, s.RuleBody,
                    "Create or replace a signal rule (a new version; applies to observations from then on)")
plan_router = CommandRouter(prefix="/api/v1", tags=["configuration"], item_path="/plans/{plan_id}", id_param=ConfigId,
                            accepted=s.PlanAccepted, callers=callers)
plan_router.command("define", c.DefinePlan, s.PlanBody,
                    "Create or replace an emergency plan: triggers, ordered steps with roles, standby resources")
rota_router = CommandRouter(prefix="/api/v1", tags=["on-call"], item_path="/rotas/{rota_id}", id_param=ConfigId,
                            accepted=s.RotaAccepted, callers=callers)
rota_router.command("define", c.DefineRota, s.RotaBody,
                    "Create or replace a team's weekly on-call rota (overrides are kept)")
rota_router.command("overrides", c.AddOverride, s.OverrideBody,
                    "Put someone else on call for a span (overrides of a rota never overlap: 409 naming `start`)")

emergency_router = CommandRouter(prefix="/api/v1", tags=["emergencies"], item_path="/emergencies/{emergency_id}",
                                 id_param=EmergencyId, accepted=s.EmergencyAccepted, callers=callers)
emergency_router.command("complete-step", c.CompleteStep, s.StepBody,
                         "Complete a step of the activated plan (once; an unknown step is a 422 naming step_id)")
emergency_router.command("stand-down", c.StandDown, s.StandDownBody,
                         "Stand the emergency down (once; risk officers only)")
emergency_router.command("review", c.RecordReview, s.ReviewBody,
                         "Record the post-incident review (复盘): findings and tracked actions")
emergency_router.command("complete-action", c.CompleteReviewAction, s.ActionBody,
                         "Mark an action of the review done")

router = APIRouter(prefix="/api/v1")


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidInput("give a time zone offset, e.g. 2026-01-31T00:00:00+08:00", field=field)
    return value


@router.post("/risks", tags=["risks"], status_code=201, response_model=s.RiskAccepted,
             summary="Identify a risk (with an initial assessment when likelihood and impact are given)",
             description="Callers: " + ", ".join(r.value for r in callers(c.IdentifyRisk)) + ". Send "
                         "Idempotency-Key to repeat safely.")
async def identify(body: s.IdentifyBody, response: Response, commands: Commands, meta: CreationMeta,
                   actor: Annotated[Actor, Depends(require(*callers(c.IdentifyRisk)))]) -> s.RiskAccepted:
    command = c.IdentifyRisk(risk_id=new_id(), **body.model_dump())
    result = await commands.execute(command, actor, replace(meta, fingerprint=body.model_dump(mode="json")))
    response.headers["ETag"] = f'"{result.version}"'
    return s.RiskAccepted(risk_id=result.stream_id, version=result.version, position=result.position,
                          event_ids=list(result.event_ids), replayed=result.replayed)


@router.post("/emergencies", tags=["emergencies"], status_code=201, response_model=s.EmergencyAccepted,
             summary="Activate an emergency plan by hand, naming who is on call for each step's role now",
             description="Callers: " + ", ".join(r.value for r in callers(c.ActivateEmergency)) + ". Send "
                         "Idempotency-Key to repeat safely.")
async def activate(body: s.ActivateBody, request: Request, response: Response, commands: Commands,
                   meta: CreationMeta,
                   actor: Annotated[Actor, Depends(require(*callers(c.ActivateEmergency)))]) -> s.EmergencyAccepted:
    command = await configuration.activation(request.app.state.engine, commands.store, emergency_id=new_id(),
                                             plan_id=body.plan_id, reason=body.reason, team=body.team,
                                             service=body.service, at=commands.clock(),
                                             trigger={"source": "manual"})
    result = await commands.execute(command, actor, replace(meta, fingerprint=body.model_dump(mode="json")))
    response.headers["ETag"] = f'"{result.version}"'
    return s.EmergencyAccepted(emergency_id=result.stream_id, version=result.version, position=result.position,
                               event_ids=list(result.event_ids), replayed=result.replayed)


# --- the register -------------------------------------------------------------------------------------------
@router.get("/risks", tags=["risks"], response_model=s.RiskPage, summary="The register, highest score first",
            description="Filters combine; `as_of` gives the register as it was then (each risk's state taking effect "
                        "by that instant). Cursor pagination: pass `next_cursor` back as `cursor`. Callers: staff, "
                        "auditors.")
async def register(queries: Queries, actor: Readers,
                   status: Literal["identified", "assessed", "mitigating", "accepted", "closed"] | None = None,
                   open_only: bool = False, category: s.Category | None = None,
                   level: Literal["low", "medium", "high", "critical"] | None = None,
                   subject_type: Literal["team", "service"] | None = None, subject: Filter = None,
                   owner: Filter = None, as_of: s.IsoDateTime | None = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 50,
                   cursor: Annotated[str | None, Query(max_length=500)] = None) -> s.RiskPage:
    filters = RiskFilters(status=status, open_only=open_only, category=category, level=level,
                          subject_type=subject_type, subject=subject, owner=owner)
    items, next_cursor = await queries.register(filters, as_of=_aware(as_of, "as_of"), limit=limit, cursor=cursor)
    return s.RiskPage(items=items, next_cursor=next_cursor)


@router.get("/risks/{risk_id}", tags=["risks"], summary="A risk with every state it has been in",
            description="`history`: one row per event, with the score then (every reassessment); `evidence`: the "
                        "upstream event ids of its signals.")
async def get_risk(risk_id: RiskId, queries: Queries, actor: Readers) -> dict[str, Any]:
    return await queries.risk(risk_id)


@router.get("/heat-map", tags=["risks"], summary="5×5 heat map of open risks (likelihood rows, impact columns)")
async def heat_map(queries: Queries, actor: Readers, as_of: s.IsoDateTime | None = None) -> dict[str, Any]:
    return await queries.heat_map(_aware(as_of, "as_of"))


@router.get("/top-risks", tags=["risks"], summary="Open risks with the highest scores")
async def top_risks(queries: Queries, actor: Readers,
                    limit: Annotated[int, Query(ge=1, le=100)] = 10) -> list[dict[str, Any]]:
    return await queries.top(limit)


@router.get("/risks-by-subject", tags=["risks"], summary="Open risks per team and per business service")
async def by_subject(queries: Queries, actor: Readers,
                     subject_type: Literal["team", "service"] | None = None) -> list[dict[str, Any]]:
    return await queries.by_subject(subject_type)


@router.get("/trend", tags=["risks"], summary="Total score of open risks at the end of each day (UTC)")
async def trend(queries: Queries, actor: Readers, since: s.IsoDate | None = None,
                until: s.IsoDate | None = None) -> list[dict[str, Any]]:
    until = until or datetime.now(UTC).date()
    return await queries.trend(since or until - timedelta(days=30), until)


# --- emergencies ----------------------------------------------------------------------------------------
@router.get("/emergencies", tags=["emergencies"], summary="Emergencies, newest first, with progress and elapsed time",
            description="`status=active`: the open ones. Elapsed time runs to the stand-down, or to now.")
async def list_emergencies(queries: Queries, actor: Readers,
                           status: Literal["active", "stood_down"] | None = None,
                           limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict[str, Any]]:
    return await queries.emergencies(datetime.now(UTC), status=status, limit=limit)


@router.get("/emergencies/{emergency_id}", tags=["emergencies"], summary="An emergency: steps, assignees, review")
async def get_emergency(emergency_id: EmergencyId, queries: Queries, actor: Readers) -> dict[str, Any]:
    return await queries.emergency(emergency_id, datetime.now(UTC))


# --- configuration and on-call --------------------------------------------------------------------------
@router.get("/rules", tags=["configuration"], summary="Every signal rule at its current version")
async def list_rules(queries: Queries, actor: Readers) -> list[dict[str, Any]]:
    return await queries.rules()


@router.get("/plans", tags=["configuration"], summary="The catalogue of emergency plans at their current versions")
async def list_plans(queries: Queries, actor: Readers) -> list[dict[str, Any]]:
    return await queries.plans()


@router.get("/rotas", tags=["on-call"], summary="Every on-call rota with its overrides")
async def list_rotas(queries: Queries, actor: Readers) -> list[dict[str, Any]]:
    return await queries.rotas()


@router.get("/on-call", tags=["on-call"], summary="Who is on call at an instant (default: now), per rota")
async def on_call(queries: Queries, actor: Readers, at: s.IsoDateTime | None = None, team: Filter = None,
                  role: Filter = None) -> list[dict[str, Any]]:
    return await queries.on_call(_aware(at, "at") or datetime.now(UTC), team=team, role=role)


@router.get("/on-call/schedule", tags=["on-call"], summary="Who is on call over a span: shifts per rota",
            description="Shifts split at hand-overs and overrides; at most a year per request.")
async def schedule(queries: Queries, actor: Readers, start: s.IsoDateTime, end: s.IsoDateTime, team: Filter = None,
                   role: Filter = None) -> list[dict[str, Any]]:
    return await queries.schedule(_aware(start, "start"), _aware(end, "end"), team=team,  # type: ignore[arg-type]
                                  role=role)
