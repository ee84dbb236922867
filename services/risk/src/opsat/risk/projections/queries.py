"""Queries of the risk service: the register (now or as it was on a past date), heat map, top risks, risks per
subject, emergencies, the trend of open risk score (read models), and configuration and on-call (folded from
this service's own configuration streams)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncEngine

from opsat.common.domain import InvalidInput, NotFound
from opsat.common.envelope import EventRegistry
from opsat.common.eventstore import EventStore
from opsat.risk.app import configuration
from opsat.risk.domain import events as ev
from opsat.risk.domain.register import OPEN
from opsat.risk.projections.tables import emergencies, risk_versions, risks

R, V, E = risks.c, risk_versions.c, emergencies.c
SUMMARY = ("risk_id", "version", "status", "title", "category", "subject_type", "subject", "owner", "source",
           "rule_id", "likelihood", "impact", "score", "level")


@dataclass(frozen=True)
class RiskFilters:
    status: str | None = None
    open_only: bool = False
    category: str | None = None
    level: str | None = None
    subject_type: str | None = None
    subject: str | None = None
    owner: str | None = None


def encode_cursor(score: int, risk_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"s": score, "id": risk_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        score, risk_id = raw["s"], raw["id"]
        if isinstance(score, bool) or not isinstance(score, int) or not isinstance(risk_id, str) or "\x00" in risk_id:
            raise ValueError("not a cursor")
        return score, risk_id
    except Exception:
        raise InvalidInput("cursor is not one this API returned", field="cursor") from None


class RiskQueries:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.store = EventStore(engine, EventRegistry("risk", ev.RISK_SERVICE_EVENTS))

    async def _rows(self, query: Any) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings().all()]

    def _register(self, as_of: datetime | None) -> Any:
        """The register now, or each risk as it was at `as_of` (its latest state taking effect by then)."""
        if as_of is None:
            return select(*[R[n] for n in SUMMARY], R.updated_at.label("since")).subquery("register")
        return (select(*[V[n] for n in SUMMARY], V.valid_from.label("since")).where(V.valid_from <= as_of)
                .order_by(V.risk_id, V.valid_from.desc(), V.version.desc()).ext(distinct_on(V.risk_id))
                .subquery("register"))

    async def register(self, filters: RiskFilters, *, as_of: datetime | None, limit: int, cursor: str | None
                       ) -> tuple[list[dict[str, Any]], str | None]:
        """Highest score first (unassessed last), then by id; `next_cursor` continues after the last item."""
        reg = self._register(as_of)
        score = func.coalesce(reg.c.score, 0)
        query = select(reg)
        for name in ("status", "category", "level", "subject_type", "subject", "owner"):
            value = getattr(filters, name)
            if value is not None:
                query = query.where(reg.c[name] == value)
        if filters.open_only:
            query = query.where(reg.c.status.in_(OPEN))
        if cursor:
            last_score, last_id = decode_cursor(cursor)
            query = query.where(or_(score < last_score, and_(score == last_score, reg.c.risk_id > last_id)))
        rows = await self._rows(query.order_by(score.desc(), reg.c.risk_id).limit(limit + 1))
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last["score"] or 0, last["risk_id"])
        return rows[:limit], next_cursor

    async def risk(self, risk_id: str) -> dict[str, Any]:
        found = await self._rows(select(risks).where(R.risk_id == risk_id))
        if not found:
            raise NotFound(f"risk {risk_id} not found", field="risk_id")
        history = await self._rows(select(risk_versions).where(V.risk_id == risk_id).order_by(V.version))
        found[0]["history"] = history
        return found[0]

    async def heat_map(self, as_of: datetime | None) -> dict[str, Any]:
        """Open risks per likelihood (rows, 5 first) and impact (columns, 1 first)."""
        reg = self._register(as_of)
        rows = await self._rows(select(reg.c.likelihood, reg.c.impact, func.count().label("n"))
                                .where(reg.c.status.in_(OPEN), reg.c.score.is_not(None))
                                .group_by(reg.c.likelihood, reg.c.impact))
        counts = {(r["likelihood"], r["impact"]): r["n"] for r in rows}
        return {"likelihood": [5, 4, 3, 2, 1], "impact": [1, 2, 3, 4, 5],
                "cells": [[counts.get((lk, im), 0) for im in range(1, 6)] for lk in range(5, 0, -1)],
                "unassessed": (await self._rows(select(func.count().label("n")).select_from(reg)
                                                .where(reg.c.status.in_(OPEN), reg.c.score.is_(None))))[0]["n"]}

    async def top(self, limit: int) -> list[dict[str, Any]]:
        return await self._rows(select(*[R[n] for n in SUMMARY], R.updated_at).where(
            R.status.in_(OPEN), R.score.is_not(None)).order_by(R.score.desc(), R.updated_at.desc(), R.risk_id)
            .limit(limit))

    async def by_subject(self, subject_type: str | None) -> list[dict[str, Any]]:
        """Open risks per team and per business service: how many, total and highest score."""
        query = (select(R.subject_type, R.subject, func.count().label("open_risks"),
                        func.coalesce(func.sum(R.score), 0).label("total_score"),
                        func.max(R.score).label("highest_score"))
                 .where(R.status.in_(OPEN)).group_by(R.subject_type, R.subject)
                 .order_by(func.coalesce(func.sum(R.score), 0).desc(), R.subject_type, R.subject))
        if subject_type is not None:
            query = query.where(R.subject_type == subject_type)
        return await self._rows(query)

    async def trend(self, since: date, until: date) -> list[dict[str, Any]]:
        """Total score of the risks open at the end of each day (UTC) from `since` to `until`."""
        if until < since:
            raise InvalidInput("until comes before since", field="until")
        if (until - since).days > 731:
            raise InvalidInput("at most two years per request", field="since")
        sql = text("""
            select d.day::date as day, coalesce(t.total, 0) as total_score, coalesce(t.n, 0) as open_risks
            from generate_series(cast(:since as date), cast(:until as date), interval '1 day') as d(day)
            left join lateral (
                select sum(v.score) as total, count(*) as n from (
                    select distinct on (risk_id) risk_id, status, score from read_model.risk_versions
                    where valid_from < (d.day + interval '1 day') at time zone 'UTC'
                    order by risk_id, valid_from desc, version desc) v
                where v.status in ('identified', 'assessed', 'mitigating')) t on true
            order by d.day""")
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sql, {"since": since, "until": until})).mappings().all()
        return [{"day": r["day"], "total_score": int(r["total_score"]), "open_risks": r["open_risks"]} for r in rows]

    # --- emergencies ------------------------------------------------------------------------------------
    async def emergencies(self, now: datetime, *, status: str | None, limit: int) -> list[dict[str, Any]]:
        query = select(emergencies).order_by(E.activated_at.desc(), E.emergency_id).limit(limit)
        if status is not None:
            query = query.where(E.status == status)
        return [_with_progress(r, now) for r in await self._rows(query)]

    async def emergency(self, emergency_id: str, now: datetime) -> dict[str, Any]:
        found = await self._rows(select(emergencies).where(E.emergency_id == emergency_id))
        if not found:
            raise NotFound(f"emergency {emergency_id} not found", field="emergency_id")
        return _with_progress(found[0], now)

    # --- configuration and on-call -----------------------------------------------------------------------
    async def rules(self) -> list[dict[str, Any]]:
        book = await configuration.rule_book(self.engine, self.store)
        return [{"rule_id": r.rule_id, "version": r.version, **r.to_spec()} for _, r in sorted(book.items())]

    async def plans(self) -> list[dict[str, Any]]:
        book = await configuration.plan_book(self.engine, self.store)
        return [{"plan_id": p.plan_id, "version": p.version, **p.to_spec()} for _, p in sorted(book.items())]

    async def rotas(self) -> list[dict[str, Any]]:
        book = await configuration.rota_book(self.engine, self.store)
        return [_rota_view(r) for _, r in sorted(book.items())]

    async def on_call(self, at: datetime, *, team: str | None, role: str | None) -> list[dict[str, Any]]:
        book = await configuration.rota_book(self.engine, self.store)
        return [{"rota_id": r.rota_id, "team": r.team, "role": r.role, "time_zone": r.time_zone, "at": at,
                 "person": r.on_call(at)} for _, r in sorted(book.items())
                if (team is None or r.team == team) and (role is None or r.role == role)]

    async def schedule(self, start: datetime, end: datetime, *, team: str | None, role: str | None
                       ) -> list[dict[str, Any]]:
        if end <= start:
            raise InvalidInput("end must come after start", field="end")
        if end - start > timedelta(days=366):
            raise InvalidInput("at most a year per request", field="end")
        book = await configuration.rota_book(self.engine, self.store)
        return [{"rota_id": r.rota_id, "team": r.team, "role": r.role, "time_zone": r.time_zone,
                 "shifts": r.shifts(start, end)} for _, r in sorted(book.items())
                if (team is None or r.team == team) and (role is None or r.role == role)]


def _rota_view(rota: Any) -> dict[str, Any]:
    return {"rota_id": rota.rota_id, "version": rota.version, **rota.to_spec(),
            "overrides": [{"override_id": o.override_id, "person": o.person, "start": o.start, "end": o.end}
                          for o in rota.overrides]}


def _with_progress(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    ended = row["stood_down_at"] or now
    total = row["steps_total"]
    return {**row, "progress_percent": round(100 * row["steps_done"] / total, 1) if total else 100.0,
            "elapsed_seconds": max(0.0, (ended - row["activated_at"]).total_seconds())}
