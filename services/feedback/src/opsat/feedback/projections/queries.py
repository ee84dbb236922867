"""Queries of the feedback service: CSAT, NPS, response rate and dimension breakdowns by period, team, engineer,
kind and business service; verbatims (anonymity honoured); follow-ups and complaints; surveys; templates; the
improvement board.
Figures are for staff and auditors; a scoped service account sees only its organisations."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, case, cast, func, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from opsat.common.domain import Actor, InvalidInput, NotFound
from opsat.common.envelope import EventRegistry
from opsat.common.eventstore import EventStore, fold
from opsat.feedback.domain import events as ev
from opsat.feedback.domain import scoring, templates
from opsat.feedback.projections.tables import followups, improvements, request_service_facts, responses, surveys

R, S, F, X, I = responses.c, surveys.c, followups.c, request_service_facts.c, improvements.c
FACTS = ("sla", "reassignments", "reopened")
GROUPS = ("team", "engineer", "kind", "service", "priority", "organisation", "campaign")
_COLUMN = {"team": "team", "engineer": "assignee", "kind": "kind", "service": "service", "priority": "priority",
           "organisation": "organisation_id", "campaign": "campaign_id"}
PERIODS = ("day", "week", "month", "quarter", "year")


def check_period(period: str | None) -> str | None:
    if period not in (None, *PERIODS):
        raise InvalidInput(f"period is one of {', '.join(PERIODS)}", field="period")
    return period


def check_groups(group_by: list[str] | None) -> list[str]:
    for group in group_by or []:
        if group not in GROUPS:
            raise InvalidInput(f"group_by is one of {', '.join(GROUPS)}", field="group_by")
    return list(dict.fromkeys(group_by or []))


async def scores_in_window(engine: AsyncEngine, scope: Mapping[str, str], start: datetime,
                           end: datetime) -> list[float]:
    """Scores of the responses answered in [start, end) whose request matches every named scope field (team,
    engineer, kind, service): what an improvement action's check compares."""
    query = select(R.score).where(R.answered_at >= start, R.answered_at < end)
    for name, value in scope.items():
        query = query.where(R[_COLUMN[name]] == value)
    async with engine.connect() as conn:
        return [float(s) for s in (await conn.execute(query)).scalars().all()]


def encode_cursor(at: datetime, key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"t": at.isoformat(), "id": key}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        at, key = datetime.fromisoformat(raw["t"]), raw["id"]
        if at.tzinfo is None or not isinstance(key, str) or "\x00" in key:
            raise ValueError("not a cursor")
        at.astimezone(UTC)  # out-of-range times fail here, not in the database
        return at, key
    except Exception:
        raise InvalidInput("cursor is not one this API returned", field="cursor") from None


class FeedbackQueries:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.store = EventStore(engine, EventRegistry("feedback", ev.FEEDBACK_EVENTS))

    @staticmethod
    def _scope(actor: Actor, table: Any) -> Any:
        if actor.scope is not None:
            return table.c.organisation_id.in_(sorted(actor.scope))
        return True if actor.reads_everything else table.c.organisation_id == actor.organisation

    @staticmethod
    def _keys(table: Any, at: Any, group_by: list[str], period: str | None) -> list[Any]:
        keys = [table.c[_COLUMN[g]].label(g) for g in group_by]
        if period:
            keys.insert(0, func.to_char(func.date_trunc(period, at), "YYYY-MM-DD").label("period"))
        return keys

    @staticmethod
    def _window(query: Any, at: Any, since: datetime | None, until: datetime | None) -> Any:
        if since is not None:
            query = query.where(at >= since)
        if until is not None:
            query = query.where(at < until)
        return query

    async def _rows(self, query: Any) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings().all()]

    async def satisfaction(self, actor: Actor, *, since: datetime | None, until: datetime | None,
                           group_by: list[str], period: str | None) -> list[dict[str, Any]]:
        """CSAT (mean score, % satisfied) and NPS of the responses answered in the window."""
        keys = self._keys(responses, R.answered_at, group_by, period)
        count = func.count()
        query = select(*keys, count.label("responses"), func.avg(R.score).label("csat_mean"),
                       count.filter(R.score >= scoring.SATISFIED_FROM).label("satisfied"),
                       count.filter(R.nps_category == "promoter").label("promoters"),
                       count.filter(R.nps_category == "detractor").label("detractors"),
                       ).where(self._scope(actor, responses))
        query = self._window(query, R.answered_at, since, until)
        if keys:
            query = query.group_by(*keys).order_by(*keys)
        out = []
        for row in await self._rows(query):
            n = row["responses"]
            if not n:
                continue
            out.append({**row, "csat_mean": round(float(row["csat_mean"]), 2),
                        "satisfied_percent": round(100 * row["satisfied"] / n, 2),
                        "nps": round(100 * (row["promoters"] - row["detractors"]) / n, 2)})
        return out

    async def by_service_facts(self, actor: Actor, *, by: str, since: datetime | None,
                               until: datetime | None) -> list[dict[str, Any]]:
        """CSAT and NPS of the responses answered in the window, split by a fact of how the request was served:
        its SLA (breached, met, unknown), its number of reassignments, or whether it was reopened."""
        key = {
            "sla": case((X.sla_breached.is_(True), "breached"), (X.resolution_on_time.is_not(None), "met"),
                        else_="unknown"),
            "reassignments": func.coalesce(X.reassignments, 0),
            "reopened": func.coalesce(X.reopened, False),
        }[by].label(by)
        count = func.count()
        query = (select(key, count.label("responses"), func.avg(R.score).label("csat_mean"),
                        count.filter(R.score >= scoring.SATISFIED_FROM).label("satisfied"),
                        count.filter(R.nps_category == "promoter").label("promoters"),
                        count.filter(R.nps_category == "detractor").label("detractors"))
                 .select_from(responses.outerjoin(request_service_facts, X.request_id == R.request_id))
                 .where(self._scope(actor, responses)).group_by(key).order_by(key))
        query = self._window(query, R.answered_at, since, until)
        return [{**row, "csat_mean": round(float(row["csat_mean"]), 2),
                 "satisfied_percent": round(100 * row["satisfied"] / row["responses"], 2),
                 "nps": round(100 * (row["promoters"] - row["detractors"]) / row["responses"], 2)}
                for row in await self._rows(query)]

    async def dimensions(self, actor: Actor, *, since: datetime | None, until: datetime | None,
                         group_by: list[str], period: str | None) -> list[dict[str, Any]]:
        """Mean rating (1-5) per dimension of the responses answered in the window."""
        each = func.json_each_text(R.ratings).table_valued("key", "value").alias("rating")
        keys = self._keys(responses, R.answered_at, group_by, period)
        dimension = literal_column("rating.key").label("dimension")
        query = (select(*keys, dimension, func.count().label("responses"),
                        func.avg(cast(literal_column("rating.value"), Integer)).label("mean_rating"))
                 .select_from(responses).join(each, text("true")).where(self._scope(actor, responses)))
        query = self._window(query, R.answered_at, since, until)
        query = query.group_by(*keys, dimension).order_by(*keys, dimension)
        return [{**r, "mean_rating": round(float(r["mean_rating"]), 2)} for r in await self._rows(query)]

    async def response_rate(self, actor: Actor, *, since: datetime | None, until: datetime | None,
                            group_by: list[str], period: str | None) -> list[dict[str, Any]]:
        """Of the surveys issued in the window: how many were answered, expired or are still open."""
        keys = self._keys(surveys, S.issued_at, group_by, period)
        count = func.count()
        query = select(*keys, count.label("issued"), count.filter(S.status == "answered").label("answered"),
                       count.filter(S.status == "expired").label("expired")).where(self._scope(actor, surveys))
        query = self._window(query, S.issued_at, since, until)
        if keys:
            query = query.group_by(*keys).order_by(*keys)
        return [{**r, "response_rate_percent": round(100 * r["answered"] / r["issued"], 2)}
                for r in await self._rows(query) if r["issued"]]

    async def verbatims(self, actor: Actor, *, since: datetime | None, until: datetime | None, team: str | None,
                        band: str | None, before: datetime | None, limit: int) -> list[dict[str, Any]]:
        """Comments, newest first; the respondent of an anonymous template is withheld."""
        query = (select(R.survey_id, R.request_id, R.requester_id, R.anonymous, R.team, R.assignee, R.kind,
                        R.service, R.score, R.band, R.nps, R.comment, R.answered_at)
                 .where(R.comment.is_not(None), self._scope(actor, responses)))
        query = self._window(query, R.answered_at, since, until)
        if team is not None:
            query = query.where(R.team == team)
        if band is not None:
            query = query.where(R.band == band)
        if before is not None:
            query = query.where(R.answered_at < before)
        rows = await self._rows(query.order_by(R.answered_at.desc(), R.survey_id).limit(limit))
        for row in rows:
            if row["anonymous"]:
                row["requester_id"] = None
        return rows

    async def followups(self, actor: Actor, *, status: list[str] | None, overdue: bool | None,
                        source: str | None, owner: str | None, limit: int) -> list[dict[str, Any]]:
        query = select(followups).where(self._scope(actor, followups))
        if status:
            query = query.where(F.status.in_(status))
        if overdue is not None:
            query = query.where(F.overdue.is_(overdue))
        if source is not None:
            query = query.where(F.source == source)
        if owner is not None:
            query = query.where(F.owner == owner)
        return await self._rows(query.order_by(F.due_at, F.followup_id).limit(limit))

    async def followup(self, actor: Actor, followup_id: str) -> dict[str, Any]:
        rows = await self._rows(select(followups).where(F.followup_id == followup_id, self._scope(actor, followups)))
        if not rows or not (actor.reads_everything or actor.scope is not None or actor.is_staff
                            or rows[0]["customer_id"] == actor.id):
            raise NotFound(f"follow-up {followup_id} not found", field="followup_id")
        return rows[0]

    async def survey(self, actor: Actor, survey_id: str) -> dict[str, Any]:
        rows = await self._rows(select(surveys).where(S.survey_id == survey_id, self._scope(actor, surveys)))
        if not rows:
            raise NotFound(f"survey {survey_id} not found", field="survey_id")
        row = rows[0]
        if row["anonymous"]:
            row["requester_id"] = None
        return row

    async def surveys(self, actor: Actor, *, request_id: str | None, status: str | None,
                      limit: int) -> list[dict[str, Any]]:
        query = select(surveys).where(self._scope(actor, surveys))
        if request_id is not None:
            query = query.where(S.request_id == request_id)
        if status is not None:
            query = query.where(S.status == status)
        rows = await self._rows(query.order_by(S.issued_at.desc(), S.survey_id).limit(limit))
        for row in rows:
            if row["anonymous"]:
                row["requester_id"] = None
        return rows

    # --- templates (folded from their streams; the shipped default is version 1) --------------------------
    async def template(self, template_id: str) -> dict[str, Any]:
        history = [r for r in await self.store.load(template_id) if r.stream_type == "survey_template"]
        current = fold(templates.evolve, history) or templates.shipped(template_id)
        if current is None:
            raise NotFound(f"template {template_id} not found", field="template_id")
        return current.to_spec()

    async def templates(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            ids = (await conn.execute(text("select distinct stream_id from events where stream_type = "
                                           "'survey_template'"))).scalars().all()
        return [await self.template(i) for i in sorted({templates.DEFAULT_TEMPLATE_ID, *ids})]

    # --- the improvement board -----------------------------------------------------------------------------
    async def improvements(self, actor: Actor, *, status: list[str] | None, scope: Mapping[str, str | None],
                           owner: str | None, limit: int, cursor: str | None
                           ) -> tuple[list[dict[str, Any]], str | None]:
        """Improvement actions, newest proposal first; a page and the cursor of the next (None on the last)."""
        query = select(improvements).where(self._scope(actor, improvements))
        if status:
            query = query.where(I.status.in_(status))
        for name, value in scope.items():
            if value is not None:
                query = query.where(I[name] == value)
        if owner is not None:
            query = query.where(I.owner == owner)
        if cursor:
            at, last = decode_cursor(cursor)
            query = query.where((I.proposed_at < at) | ((I.proposed_at == at) & (I.improvement_id > last)))
        rows = await self._rows(query.order_by(I.proposed_at.desc(), I.improvement_id).limit(limit + 1))
        more = len(rows) > limit
        return rows[:limit], encode_cursor(rows[limit - 1]["proposed_at"], rows[limit - 1]["improvement_id"]) \
            if more else None

    async def improvement(self, actor: Actor, improvement_id: str) -> dict[str, Any]:
        rows = await self._rows(select(improvements).where(I.improvement_id == improvement_id,
                                                           self._scope(actor, improvements)))
        if not rows:
            raise NotFound(f"improvement action {improvement_id} not found", field="improvement_id")
        return rows[0]
