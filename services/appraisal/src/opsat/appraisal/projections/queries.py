"""Queries of the appraisal service, and the calculation a period's scorecards come from.

`calculate` reads the facts read model: the requests resolved within the period (in the organisation's
time zone), each credited to its resolver and to its team. The same rows give the same cards; rows that
change after a calculation show as a pending difference beside the card, never folded into it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from opsat.appraisal.domain import catalogues, periods
from opsat.appraisal.domain import events as ev
from opsat.appraisal.domain.facts import Fact, Totals
from opsat.appraisal.domain.kpis import Catalogue
from opsat.appraisal.domain.scorecards import Scorecard, calculate
from opsat.appraisal.projections.periods import TEAM_PREFIX
from opsat.appraisal.projections.tables import (
    appeals,
    awards,
    improvement_plans,
    request_credits,
    scorecards,
    sla_outcomes,
)
from opsat.appraisal.projections.tables import periods as periods_table
from opsat.common.domain import NotFound
from opsat.common.envelope import EventRegistry
from opsat.common.eventstore import EventStore, fold

R, O, S = request_credits.c, sla_outcomes.c, scorecards.c


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
    async def facts(self, starts_on: date, ends_on: date, zone: ZoneInfo, subject: str | None = None
                    ) -> dict[str, list[Fact]]:
        """Facts per subject of the requests resolved from `starts_on` to `ends_on` (inclusive days in `zone`)."""
        since = datetime.combine(starts_on, time(), zone)
        until = datetime.combine(ends_on + timedelta(days=1), time(), zone)
        response = sla_outcomes.alias("response")
        resolution = sla_outcomes.alias("resolution")
        query = (select(R.request_id, R.engineer, R.team, R.resolved_at, R.resolved_event_id, R.reopen_event_ids,
                        response.c.event_id.label("response_event"), response.c.on_time.label("response_on_time"),
                        resolution.c.event_id.label("resolution_event"),
                        resolution.c.on_time.label("resolution_on_time"))
                 .outerjoin(response, and_(response.c.request_id == R.request_id, response.c.target == "response"))
                 .outerjoin(resolution, and_(resolution.c.request_id == R.request_id,
                                             resolution.c.target == "resolution"))
                 .where(R.resolved_at >= since, R.resolved_at < until, R.engineer.is_not(None))
                 .order_by(R.request_id))
        if subject is not None:
            query = query.where(R.team == subject.removeprefix(TEAM_PREFIX) if subject.startswith(TEAM_PREFIX)
                                else R.engineer == subject)
        by_subject: dict[str, list[Fact]] = defaultdict(list)
        async with self.engine.connect() as conn:
            for row in (await conn.execute(query)).mappings():
                for fact in facts_of(row, zone):
                    by_subject[fact.subject].append(fact)
        if subject is not None:
            return {subject: by_subject.get(subject, [])}
        return dict(by_subject)

    async def calculate(self, state: periods.Period, subject: str | None = None) -> list[Scorecard]:
        catalogue = await self.catalogue(state.catalogue_version)
        facts = await self.facts(state.starts_on, state.ends_on, ZoneInfo(state.time_zone), subject)
        return [calculate(s, Totals.of(facts[s]), catalogue, state.grades) for s in sorted(facts)]

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
        [fresh] = await self.calculate(state, subject) or [None]
        pending = []
        for line in card.lines:
            now = fresh.line(line.kpi_id) if fresh else None
            if now is not None and (now.value, dict(now.facts)) != (line.value, dict(line.facts)):
                pending.append({"kpi_id": line.kpi_id, "value": line.value, "value_now": now.value,
                                "facts_now": {k: str(v) for k, v in now.facts.items()}})
        return {"period_id": period_id, "status": state.status, **card.to_dict(), "pending_differences": pending}

    async def drilldown(self, period_id: str, subject: str, kpi_id: str) -> dict[str, Any]:
        card = (await self.scorecard(period_id, subject))
        line = next((x for x in card["lines"] if x["kpi_id"] == kpi_id), None)
        if line is None:
            raise NotFound(f"{kpi_id} is not on this scorecard", field="kpi_id")
        return {"period_id": period_id, "subject": subject, "kpi_id": kpi_id, "value": line["value"],
                "score": line["score"], "facts": [{"fact": name, "amount": line["facts"][name],
                                                   "event_ids": line["evidence"].get(name, [])}
                                                  for name in line["facts"]]}

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
