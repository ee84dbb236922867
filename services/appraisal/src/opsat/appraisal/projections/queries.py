"""Queries of the appraisal service, and the calculation a period's scorecards come from.

`calculate` reads the facts read model: the requests resolved within the period (in the organisation's
time zone), each credited to its resolver and to its team, and the answered surveys, complaints, risks and
emergencies dated within it, each credited to the engineer and team it names. The same rows give the same cards; rows that
change after a calculation show as a pending difference beside the card, never folded into it.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from opsat.appraisal.domain import catalogues, periods
from opsat.appraisal.domain import events as ev
from opsat.appraisal.domain.facts import Fact, Totals
from opsat.appraisal.domain.kpis import Catalogue
from opsat.appraisal.domain.scorecards import Scorecard, calculate
from opsat.appraisal.projections.periods import TEAM_PREFIX, PeriodsProjection
from opsat.appraisal.projections.tables import (
    appeals,
    awards,
    improvement_plans,
    request_credits,
    scorecards,
    sla_outcomes,
    stream_versions,
)
from opsat.appraisal.projections.tables import periods as periods_table
from opsat.common.domain import NotFound
from opsat.common.envelope import EventRegistry
from opsat.common.eventstore import EventStore, fold
from opsat.common.freshness import ReadModelWatch, stream_reached, wait_until

R, O, S = request_credits.c, sla_outcomes.c, scorecards.c
FACT_COLUMNS = ("handled", "resolved", "reopened", "first_time_resolved", "response_measured", "responded_on_time",
                "resolution_measured", "resolved_on_time", "csat_responses", "csat_score_sum", "complaints", "risks",
                "emergencies")
# Feedback's and risk's facts dated in the period, with the engineer and team each names, or else those of its
# request (a complaint's request only within the complaint's organisation).
NAMED_SQL = """
  select f.event_id, f.fact, f.at, f.score,
         coalesce(f.engineer, c.engineer) as engineer, coalesce(f.team, c.team) as team
  from read_model.subject_facts f
  left join read_model.request_credits c
    on c.request_id = f.request_id and (f.organisation_id is null or c.organisation_id = f.organisation_id)
  where f.at >= :since and f.at < :until
"""
# Per resolved request: the resolver and the team each get handled, resolved, reopened or first-time resolved,
# and each SLA target's outcome (measured; on time). Per feedback or risk fact: the engineer and team it names.
TOTALS_SQL = """
with credited as (
  select c.engineer, c.team, cardinality(c.reopen_event_ids) > 0 as reopened,
         a.event_id is not null as response_measured, coalesce(a.on_time, 0) as responded_on_time,
         b.event_id is not null as resolution_measured, coalesce(b.on_time, 0) as resolved_on_time
  from read_model.request_credits c
  left join read_model.sla_outcomes a on a.request_id = c.request_id and a.target = 'response'
  left join read_model.sla_outcomes b on b.request_id = c.request_id and b.target = 'resolution'
  where c.resolved_at >= :since and c.resolved_at < :until and c.engineer is not null
), subjects as (
  select engineer as subject, * from credited
  union all
  select 'team:' || team as subject, * from credited where team is not null
), request_totals as (
  select subject, count(*) as handled, count(*) as resolved, count(*) filter (where reopened) as reopened,
         count(*) filter (where not reopened) as first_time_resolved,
         count(*) filter (where response_measured) as response_measured,
         sum(responded_on_time) as responded_on_time,
         count(*) filter (where resolution_measured) as resolution_measured, sum(resolved_on_time) as resolved_on_time
  from subjects group by subject
), named as (""" + NAMED_SQL + """), named_subjects as (
  select engineer as subject, fact, score from named where engineer is not null
  union all
  select 'team:' || team as subject, fact, score from named where team is not null
), named_totals as (
  select subject, count(*) filter (where fact = 'csat') as csat_responses,
         coalesce(sum(score) filter (where fact = 'csat'), 0) as csat_score_sum,
         count(*) filter (where fact = 'complaint') as complaints, count(*) filter (where fact = 'risk') as risks,
         count(*) filter (where fact = 'emergency') as emergencies
  from named_subjects group by subject
)
select coalesce(r.subject, n.subject) as subject,
       coalesce(r.handled, 0) as handled, coalesce(r.resolved, 0) as resolved, coalesce(r.reopened, 0) as reopened,
       coalesce(r.first_time_resolved, 0) as first_time_resolved,
       coalesce(r.response_measured, 0) as response_measured, coalesce(r.responded_on_time, 0) as responded_on_time,
       coalesce(r.resolution_measured, 0) as resolution_measured, coalesce(r.resolved_on_time, 0) as resolved_on_time,
       coalesce(n.csat_responses, 0) as csat_responses, coalesce(n.csat_score_sum, 0) as csat_score_sum,
       coalesce(n.complaints, 0) as complaints, coalesce(n.risks, 0) as risks, coalesce(n.emergencies, 0) as emergencies
from request_totals r full join named_totals n on n.subject = r.subject
"""
# One feedback or risk fact's numbers, by the `fact` column of `subject_facts`.
NAMED_FACTS = {"csat": ("csat_responses", "csat_score_sum"), "complaint": ("complaints",), "risk": ("risks",),
               "emergency": ("emergencies",)}


def facts_of(row: Any, zone: ZoneInfo) -> list[Fact]:
    """The facts one resolved request gives its resolver and its team."""
    day = row["resolved_at"].astimezone(zone).date()
    resolved = row["resolved_event_id"]
    raw: list[tuple[str, int, str]] = [("handled", 1, resolved), ("resolved", 1, resolved)]
    reopens = list(row["reopen_event_ids"] or [])
    if reopens:
        raw += [("reopened", 1 if i == 0 else 0, eid) for i, eid in enumerate(reopens)]
    else:
        raw.append(("first_time_resolved", 1, resolved))
    for target, measured, on_time in (("response", "response_measured", "responded_on_time"),
                                      ("resolution", "resolution_measured", "resolved_on_time")):
        event_id = row[f"{target}_event"]
        if event_id is not None:
            raw.append((measured, 1, event_id))
            if row[f"{target}_on_time"]:
                raw.append((on_time, 1, event_id))
    subjects = [row["engineer"]] + ([TEAM_PREFIX + row["team"]] if row["team"] else [])
    return [Fact(subject, day, name, Decimal(amount), event_id)
            for subject in subjects for name, amount, event_id in raw]


def named_facts_of(row: Any, zone: ZoneInfo) -> list[Fact]:
    """The facts one feedback or risk event gives the engineer and the team it names."""
    day = row["at"].astimezone(zone).date()
    amounts = {"csat_score_sum": row["score"]}
    subjects = ([row["engineer"]] if row["engineer"] else []) + ([TEAM_PREFIX + row["team"]] if row["team"] else [])
    return [Fact(subject, day, name, Decimal(amounts.get(name, 1)), row["event_id"])
            for subject in subjects for name in NAMED_FACTS[row["fact"]]]


class AppraisalQueries:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.store = EventStore(engine, EventRegistry("appraisal", ev.APPRAISAL_EVENTS))

    # --- configuration and periods from their streams ----------------------------------------------------
    async def catalogue(self, version: int | None = None) -> Catalogue:
        """The catalogue at `version` (None: the current one)."""
        history = await self.store.load(catalogues.DEFAULT_ID)
        shipped = catalogues.shipped(catalogues.DEFAULT_ID)
        assert shipped is not None
        versions = {shipped.version: shipped}
        for record in history:
            catalogue = catalogues.evolve(None, record.event)
            versions[catalogue.version] = catalogue
        wanted = max(versions) if version is None else version
        if wanted not in versions:
            raise NotFound(f"KPI catalogue version {wanted} does not exist", field="catalogue_version")
        return versions[wanted]

    async def period_state(self, period_id: str) -> periods.Period:
        history = await self.store.load(period_id)
        if not history or history[0].stream_type != "appraisal_period":
            raise NotFound(f"period {period_id} does not exist", field="period_id")
        return fold(periods.evolve, history)

    # --- the calculation -----------------------------------------------------------------------------------
    def _window(self, state: periods.Period) -> tuple[datetime, datetime]:
        """The period's days in its time zone, as instants: [first day 00:00, day after the last 00:00)."""
        zone = ZoneInfo(state.time_zone)
        return (datetime.combine(state.starts_on, time(), zone),
                datetime.combine(state.ends_on + timedelta(days=1), time(), zone))

    async def totals(self, state: periods.Period) -> dict[str, Totals]:
        """Fact totals per subject (engineer, team:<name>) of the requests resolved in the period, summed by
        PostgreSQL: the same attribution as `facts_of`, which the drill-down uses row by row."""
        since, until = self._window(state)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(text(TOTALS_SQL), {"since": since, "until": until})).mappings().all()
        return {row["subject"]: Totals({name: Decimal(row[name]) for name in FACT_COLUMNS}) for row in rows}

    async def calculate(self, state: periods.Period) -> list[Scorecard]:
        catalogue = await self.catalogue(state.catalogue_version)
        totals = await self.totals(state)
        return [calculate(subject, totals[subject], catalogue, state.grades) for subject in sorted(totals)]

    async def evidence(self, state: periods.Period, subject: str) -> Totals:
        """One subject's facts in the period with the ids of the events behind each."""
        since, until = self._window(state)
        response, resolution = sla_outcomes.alias("response"), sla_outcomes.alias("resolution")
        query = (select(R.request_id, R.engineer, R.team, R.resolved_at, R.resolved_event_id, R.reopen_event_ids,
                        response.c.event_id.label("response_event"), response.c.on_time.label("response_on_time"),
                        resolution.c.event_id.label("resolution_event"),
                        resolution.c.on_time.label("resolution_on_time"))
                 .outerjoin(response, and_(response.c.request_id == R.request_id, response.c.target == "response"))
                 .outerjoin(resolution, and_(resolution.c.request_id == R.request_id,
                                             resolution.c.target == "resolution"))
                 .where(R.resolved_at >= since, R.resolved_at < until, R.engineer.is_not(None),
                        R.team == subject.removeprefix(TEAM_PREFIX) if subject.startswith(TEAM_PREFIX)
                        else R.engineer == subject))
        zone = ZoneInfo(state.time_zone)
        named = f"select * from ({NAMED_SQL}) named where " + (
            "team = :name" if subject.startswith(TEAM_PREFIX) else "engineer = :name")
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
            named_rows = (await conn.execute(text(named), {"since": since, "until": until,
                                                           "name": subject.removeprefix(TEAM_PREFIX)})).mappings().all()
        facts = [f for row in rows for f in facts_of(row, zone)]
        facts += [f for row in named_rows for f in named_facts_of(row, zone)]
        return Totals.of(f for f in facts if f.subject == subject)

    # --- reads ---------------------------------------------------------------------------------------------
    async def periods(self, status: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        query = select(periods_table).order_by(periods_table.c.starts_on.desc(), periods_table.c.period_id)
        if status:
            query = query.where(periods_table.c.status == status)
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query.limit(limit).offset(offset))).mappings()]

    async def period(self, period_id: str) -> dict[str, Any]:
        state = await self.period_state(period_id)
        return {"period_id": state.period_id, "organisation_id": state.organisation_id, "cadence": state.cadence,
                "starts_on": state.starts_on, "ends_on": state.ends_on, "status": state.status,
                "catalogue_version": state.catalogue_version, "grades": state.grades.to_spec(),
                "incentives": state.incentives.to_spec(), "appeal_days": state.appeal_days,
                "time_zone": state.time_zone, "appeal_until": state.appeal_until, "scorecards": len(state.scorecards),
                "open_appeals": len(state.open_appeals)}

    async def period_reached(self, period_id: str, version: int, wait_s: float,
                             watch: ReadModelWatch | None) -> bool:
        """Whether the read model has the period's stream up to `version`, waiting up to `wait_s` for it."""
        return await wait_until(lambda: stream_reached(
            self.engine, stream_versions, PeriodsProjection.name, self.store.registry.source, period_id, version),
            wait_s, watch)

    async def ranking(self, period_id: str, kind: str, limit: int, offset: int) -> list[dict[str, Any]]:
        """Scorecards of one kind, best total first (ungraded last), with their rank."""
        query = (select(S.subject, S.total, S.grade, func.rank().over(order_by=S.total.desc().nulls_last())
                        .label("rank"))
                 .where(S.period_id == period_id, S.subject_kind == kind)
                 .order_by(S.total.desc().nulls_last(), S.subject).limit(limit).offset(offset))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        if not rows and offset == 0:
            await self.period_state(period_id)  # 404 for an unknown period, [] for one without cards
        return [dict(r) for r in rows]

    async def scorecard(self, period_id: str, subject: str) -> dict[str, Any]:
        """The recorded card, and what a calculation from today's facts would give where it differs."""
        state = await self.period_state(period_id)
        card = state.scorecards.get(subject)
        if card is None:
            raise NotFound(f"{subject} has no scorecard in period {period_id}", field="subject")
        catalogue = await self.catalogue(state.catalogue_version)
        fresh = calculate(subject, await self.evidence(state, subject), catalogue, state.grades)
        pending = []
        for line in card.lines:
            now = fresh.line(line.kpi_id)
            if now is not None and (now.value, dict(now.facts)) != (line.value, dict(line.facts)):
                pending.append({"kpi_id": line.kpi_id, "value": line.value, "value_now": now.value,
                                "facts_now": {k: str(v) for k, v in now.facts.items()}})
        return {"period_id": period_id, "status": state.status, **card.to_dict(), "pending_differences": pending}

    async def drilldown(self, period_id: str, subject: str, kpi_id: str) -> dict[str, Any]:
        """The facts behind one number on a card and the events behind each fact (as the facts stand now:
        `matches_card` is false when late events changed them since the calculation)."""
        state = await self.period_state(period_id)
        card = state.scorecards.get(subject)
        if card is None:
            raise NotFound(f"{subject} has no scorecard in period {period_id}", field="subject")
        line = card.line(kpi_id)
        if line is None:
            raise NotFound(f"{kpi_id} is not on this scorecard", field="kpi_id")
        found = await self.evidence(state, subject)
        facts = [{"fact": name, "amount": str(amount), "amount_now": str(found.amounts.get(name, Decimal(0))),
                  "event_ids": list(found.evidence.get(name, ()))} for name, amount in line.facts.items()]
        return {"period_id": period_id, "subject": subject, "kpi_id": kpi_id,
                "value": None if line.value is None else str(line.value),
                "score": None if line.score is None else str(line.score), "facts": facts,
                "matches_card": all(f["amount"] == f["amount_now"] for f in facts)}

    async def trend(self, subject: str, kpi_id: str | None, limit: int) -> list[dict[str, Any]]:
        query = (select(S.period_id, S.total, S.grade, S.card, periods_table.c.starts_on, periods_table.c.status)
                 .join(periods_table, periods_table.c.period_id == S.period_id).where(S.subject == subject)
                 .order_by(periods_table.c.starts_on.desc()).limit(limit))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        out = []
        for r in reversed(rows):
            item = {"period_id": r["period_id"], "starts_on": r["starts_on"], "status": r["status"],
                    "total": r["total"], "grade": r["grade"]}
            if kpi_id:
                line = next((x for x in r["card"]["lines"] if x["kpi_id"] == kpi_id), None)
                item.update(value=line and line["value"], score=line and line["score"])
            out.append(item)
        return out

    async def appeals(self, status: str | None, period_id: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        query = select(appeals).order_by(appeals.c.filed_at, appeals.c.appeal_id)
        if status == "open":
            query = query.where(appeals.c.outcome.is_(None))
        elif status:
            query = query.where(appeals.c.outcome == status)
        if period_id:
            query = query.where(appeals.c.period_id == period_id)
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query.limit(limit).offset(offset))).mappings()]

    async def incentives(self, period_id: str | None, subject: str | None, limit: int, offset: int
                         ) -> list[dict[str, Any]]:
        return await self._list(awards, period_id, subject, limit, offset)

    async def improvement_plans(self, period_id: str | None, subject: str | None, limit: int, offset: int
                                ) -> list[dict[str, Any]]:
        return await self._list(improvement_plans, period_id, subject, limit, offset)

    async def _list(self, table: Any, period_id: str | None, subject: str | None, limit: int, offset: int
                    ) -> list[dict[str, Any]]:
        query = select(table).order_by(table.c.at.desc(), table.c.period_id, table.c.subject)
        if period_id:
            query = query.where(table.c.period_id == period_id)
        if subject:
            query = query.where(table.c.subject == subject)
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query.limit(limit).offset(offset))).mappings()]
