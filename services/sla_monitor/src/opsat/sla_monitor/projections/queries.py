"""Queries of the SLA monitor: a clock's state and explanation (folded from its stream), and the lists
and figures from the `sla_targets` read model. Requesters see only their organisation's clocks."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from sqlalchemy import and_, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from opsat.common.domain import Actor, InvalidInput, NotFound
from opsat.common.envelope import EventRegistry
from opsat.common.eventstore import EventStore, fold
from opsat.common.workhours import WorkCalendar, calendar_from_spec
from opsat.sla_monitor.domain import calendars, clocks, policies, whatif
from opsat.sla_monitor.domain import events as ev
from opsat.sla_monitor.projections.tables import outages, request_work, sla_stalls, sla_targets, time_logs

T = sla_targets.c
W = request_work.c
GROUPS = {"team": T.team, "priority": T.priority, "kind": T.kind, "service": T.service,
          "customer_tier": T.customer_tier}


def _summary(event: Any) -> str:
    name = event.event_type.removeprefix("opsat.sla.clock.")
    match event:
        case ev.ClockStarted():
            return f"started under policy {event.policy_id} v{event.policy_version}, calendar " \
                   f"{event.calendar_id} v{event.calendar_version}"
        case ev.ResponseMet() | ev.ResolutionMet():
            return f"{name} ({'on time' if event.on_time else 'late'})"
        case ev.ClockPaused() | ev.ClockCancelled():
            return f"{name}: {event.reason}"
        case ev.ClockResumed():
            return f"resumed ({event.reason}) after {event.paused_seconds:.0f} business seconds paused"
        case ev.ThresholdReached():
            return f"{event.target} at {event.percent} %" + (f", tell {event.escalate_to}" if event.escalate_to else "")
        case ev.TargetBreached():
            return f"{event.target} breached" + (f", tell {event.escalate_to}" if event.escalate_to else "")
        case ev.ClockEscalated():
            return f"{event.target} at {event.percent} %, escalated to {event.escalate_to}"
        case ev.ClockRetargeted() if event.by:
            return f"re-targeted under policy {event.policy_id} v{event.policy_version} by {event.by}: {event.reason}"
        case ev.ClockRetargeted():
            return f"re-targeted for {event.priority} under policy {event.policy_id} v{event.policy_version}"
        case ev.TeamChanged():
            return f"team {event.team}"
        case ev.ExcusalRequested():
            return f"{event.target} breach: excusal asked by {event.by} ({event.cause}): {event.reason}"
        case ev.ExcusalApproved() | ev.ExcusalRejected():
            return f"{event.target} breach: {name} by {event.by}: {event.reason}"
        case ev.ClockStalled():
            return f"stalled: no activity since {event.quiet_since.isoformat()} ({event.quiet_seconds:.0f} business " \
                   "seconds)"
        case ev.OlaBreached():
            return f"OLA of team {event.team} breached (held since {event.held_since.isoformat()})"
        case ev.UpdateGiven():
            return f"update given, next due at {event.next_due_at.isoformat()}"
        case ev.UpdateOverdue():
            return f"update overdue: none since {event.since.isoformat()}"
        case ev.StallCleared():
            return f"stall cleared by {event.activity.removeprefix('opsat.intake.request.')}"
    return name


class SlaQueries:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.store = EventStore(engine, EventRegistry("sla", ev.SLA_EVENTS))

    def _scope(self, actor: Actor) -> Any:
        return True if actor.reads_everything else T.organisation_id == actor.organisation

    async def clock(self, actor: Actor, request_id: str, now: datetime, *, as_of: datetime | None = None
                    ) -> dict[str, Any]:
        """The clock at `now`; with `as_of`, as it was then: only the events recorded by that instant."""
        history = await self.store.load(request_id)
        if as_of is not None:
            history, now = [r for r in history if r.recorded_at <= as_of], as_of
        state = fold(clocks.evolve, history) if history and history[0].stream_type == "sla_clock" else None
        if state is None or not (actor.reads_everything or state.organisation_id == actor.organisation):
            raise NotFound(f"no SLA clock for request {request_id}", field="request_id")
        view = clocks.view(state, now)
        view["version"] = history[-1].version
        view["explanation"] = [
            {"version": r.version, "type": r.event.event_type, "at": getattr(r.event, "at", r.recorded_at),
             "summary": _summary(r.event), "caused_by": r.metadata.get("causation_id"), "event_id": r.event_id}
            for r in history]
        return view

    async def at_risk(self, actor: Actor, now: datetime, *, team: str | None, limit: int) -> list[dict[str, Any]]:
        """Open targets that reached a warning or breach, soonest (or longest overdue) first."""
        query = (select(sla_targets).where(T.status == "running", self._scope(actor),
                                           (T.warned_percent.is_not(None)) | (T.breached_at.is_not(None)))
                 .order_by(T.due_at, T.request_id, T.target).limit(limit))
        if team:
            query = query.where(T.team == team)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [{**row, "time_left_seconds": (row["due_at"] - now).total_seconds()} for row in rows]

    async def at_risk_as_of(self, actor: Actor, as_of: datetime, *, team: str | None,
                            limit: int) -> list[dict[str, Any]]:
        """The at-risk queue as it was at `as_of`, folded from the clocks' streams (the read model holds only now):
        clocks that had announced a warning or breach by then, their running targets, least time left first."""
        marks = [cls.event_type for cls in (ev.ThresholdReached, ev.TargetBreached, ev.ClockEscalated)]
        async with self.engine.connect() as conn:
            ids = (await conn.execute(text(
                "select distinct stream_id from events where stream_type = 'sla_clock' and recorded_at <= :t"
                " and event_type = any(:marks)"), {"t": as_of, "marks": marks})).scalars().all()
        queue = []
        for request_id in ids:
            history = [r for r in await self.store.load(request_id) if r.recorded_at <= as_of]
            state = fold(clocks.evolve, history)
            if state is None or not (actor.reads_everything or state.organisation_id == actor.organisation):
                continue
            if state.paused_since is not None or (team and state.team != team):
                continue
            for name in clocks.TARGETS:
                target = state.targets[name]
                if not state.running(name) or not (target.reached & {*state.warning_thresholds, clocks.BREACH}):
                    continue
                due = state.due(name)
                queue.append({"request_id": state.request_id, "target": name, "organisation_id": state.organisation_id,
                              "kind": state.kind, "priority": state.priority, "service": state.service,
                              "team": state.team, "policy_id": state.policy_id, "due_at": due,
                              "warned_percent": max((p for p in target.reached if p < clocks.BREACH), default=None),
                              "breached": clocks.BREACH in target.reached,
                              "time_left_seconds": (due - as_of).total_seconds()})
        queue.sort(key=lambda row: (row["due_at"], row["request_id"], row["target"]))
        return queue[:limit]

    async def breaches(self, actor: Actor, *, since: datetime | None, until: datetime | None, team: str | None,
                       limit: int) -> list[dict[str, Any]]:
        query = select(sla_targets).where(T.breached_at.is_not(None), self._scope(actor))
        if since is not None:
            query = query.where(T.breached_at >= since)
        if until is not None:
            query = query.where(T.breached_at < until)
        if team is not None:
            query = query.where(T.team == team)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(T.breached_at.desc(), T.request_id).limit(limit))).mappings()
            return [dict(r) for r in rows.all()]

    async def compliance(self, actor: Actor, *, target: str, since: datetime | None, until: datetime | None,
                         group_by: list[str], period: str | None) -> list[dict[str, Any]]:
        """Of the targets decided (met, or breached) in the period: how many were met on time."""
        decided_at = func.coalesce(T.breached_at, T.met_at)
        keys = [GROUPS[g].label(g) for g in group_by]
        if period:
            keys.insert(0, func.to_char(func.date_trunc(period, decided_at), "YYYY-MM-DD").label("period"))
        # A met target's own verdict decides (a breach announced while its accept was still in flight is moot).
        # An excused breach leaves the figures; it is counted apart so that it stays visible.
        excused = T.excusal.is_not_distinct_from("approved")
        compliant = func.count().filter(T.on_time.is_(True), ~excused)
        query = (select(*keys, func.count().filter(~excused).label("decided"), compliant.label("met_on_time"),
                        func.count().filter(excused).label("excused"))
                 .where(T.target == target, T.status != "cancelled", decided_at.is_not(None), self._scope(actor)))
        if since is not None:
            query = query.where(decided_at >= since)
        if until is not None:
            query = query.where(decided_at < until)
        if keys:
            query = query.group_by(*keys).order_by(*keys)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [{**r, "compliance_percent": round(100 * r["met_on_time"] / r["decided"], 2) if r["decided"] else None}
                for r in rows if r["decided"] or r["excused"]]

    async def response_times(self, actor: Actor, *, since: datetime | None, until: datetime | None,
                             group_by: list[str]) -> list[dict[str, Any]]:
        """MTTA (submit to accept or first reply) and MTTR (submit to resolve), wall-clock seconds, of the targets
        met in the period; cancelled requests do not count."""
        keys = [GROUPS[g].label(g) for g in group_by]
        took = func.extract("epoch", T.met_at - T.started_at)
        response, resolution = T.target == "response", T.target == "resolution"
        query = (select(*keys, func.count().filter(response).label("acknowledged"),
                        func.avg(took).filter(response).label("mtta_seconds"),
                        func.count().filter(resolution).label("resolved"),
                        func.avg(took).filter(resolution).label("mttr_seconds"))
                 .where(T.met_at.is_not(None), T.status != "cancelled", self._scope(actor)))
        if since is not None:
            query = query.where(T.met_at >= since)
        if until is not None:
            query = query.where(T.met_at < until)
        if keys:
            query = query.group_by(*keys).order_by(*keys)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [{**r, **{k: round(float(r[k]), 3) if r[k] is not None else None
                         for k in ("mtta_seconds", "mttr_seconds")}} for r in rows if r["acknowledged"] or r["resolved"]]

    async def first_contact_resolution(self, actor: Actor, *, since: datetime | None, until: datetime | None,
                                       group_by: list[str], period: str | None) -> list[dict[str, Any]]:
        """Of the requests resolved in the period (resolution target met; cancelled ones do not count), the share
        resolved at first contact: never moved to another team or person, never reopened and never waiting on the
        customer for information (intake's assigned, reopened and customer_info_requested events)."""
        keys = [GROUPS[g].label(g) for g in group_by]
        if period:
            keys.insert(0, func.to_char(func.date_trunc(period, T.met_at), "YYYY-MM-DD").label("period"))
        first_contact = and_(func.coalesce(W.reassignments, 0) == 0, func.coalesce(W.reopens, 0) == 0,
                             func.coalesce(W.customer_waits, 0) == 0)
        query = (select(*keys, func.count().label("resolved"),
                        func.count().filter(first_contact).label("first_contact"),
                        func.count().filter(func.coalesce(W.reassignments, 0) > 0).label("reassigned"),
                        func.count().filter(func.coalesce(W.reopens, 0) > 0).label("reopened"),
                        func.count().filter(func.coalesce(W.customer_waits, 0) > 0).label("waited_on_customer"))
                 .select_from(sla_targets.outerjoin(request_work, W.request_id == T.request_id))
                 .where(T.target == "resolution", T.status == "met", T.met_at.is_not(None), self._scope(actor)))
        if since is not None:
            query = query.where(T.met_at >= since)
        if until is not None:
            query = query.where(T.met_at < until)
        if keys:
            query = query.group_by(*keys).order_by(*keys)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [{**r, "fcr_percent": round(100 * r["first_contact"] / r["resolved"], 2)} for r in rows if r["resolved"]]

    async def availability(self, targets: dict[str, float], *, since: datetime, until: datetime,
                           now: datetime) -> list[dict[str, Any]]:
        """Per business service: the share of [since, until) no outage covered (overlapping outages count once;
        an ongoing one counts until now)."""
        query = (select(outages).where(outages.c.service.in_(list(targets)), outages.c.started_at < until,
                                       func.coalesce(outages.c.ended_at, now) > since)
                 .order_by(outages.c.service, outages.c.started_at))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        period = (until - since).total_seconds()
        report = []
        for service, target in sorted(targets.items()):
            spans = sorted((max(r["started_at"], since), min(r["ended_at"] or now, until))
                           for r in rows if r["service"] == service)
            down, reach = 0.0, since
            for start, end in spans:  # merged: overlapping outages count once
                start = max(start, reach)
                if end > start:
                    down += (end - start).total_seconds()
                    reach = end
            percent = round(100 * (1 - down / period), 4)
            report.append({"service": service, "since": since, "until": until, "target_percent": target,
                           "availability_percent": percent, "met": percent >= target, "downtime_seconds": down,
                           "outages": len(spans)})
        return report

    async def stalled(self, actor: Actor, *, team: str | None, priority: str | None, limit: int, offset: int
                      ) -> list[dict[str, Any]]:
        """Requests flagged as stalled whose flag stands, longest quiet first."""
        S = sla_stalls.c
        scope = True if actor.reads_everything else S.organisation_id == actor.organisation
        query = (select(sla_stalls, W.assignee).outerjoin(request_work, W.request_id == S.request_id)
                 .where(scope).order_by(S.quiet_since, S.request_id).limit(limit).offset(offset))
        if team is not None:
            query = query.where(S.team == team)
        if priority is not None:
            query = query.where(S.priority == priority)
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings().all()]

    async def workload(self, actor: Actor, *, since: date, until: date, calendar_id: str, team: str | None,
                       engineer: str | None, now: datetime) -> dict[str, Any]:
        """Per engineer and team: open requests held, their weight and business time left, stalled ones, and the
        hours logged in [since, until) against the business hours the calendar offers in those days."""
        spec = await self.calendar(calendar_id)
        calendar = await self._work_calendar(calendar_id)
        zone = calendar.zone
        available = calendar.between(datetime.combine(since, time(), zone), datetime.combine(until, time(), zone))
        available_hours = round(available.total_seconds() / 3600, 2)
        scope = self._scope(actor)
        holder = func.coalesce(W.assignee, UNASSIGNED)
        open_rows = (select(T.request_id, T.priority, T.team, T.due_at, T.calendar_id, T.status,
                            holder.label("engineer"), sla_stalls.c.request_id.label("stalled"))
                     .outerjoin(request_work, W.request_id == T.request_id)
                     .outerjoin(sla_stalls, sla_stalls.c.request_id == T.request_id)
                     .where(T.target == "resolution", T.status.in_(("running", "paused")), scope))
        L = time_logs.c
        # Time logs hold no organisation: a requester-scoped caller sees only time on its organisation's requests.
        logged = (select(L.engineer, func.coalesce(L.team, T.team).label("team"),
                         func.sum(L.minutes).label("minutes"))
                  .join(sla_targets, and_(T.request_id == L.request_id, T.target == "resolution"), isouter=True)
                  .where(L.work_date >= since, L.work_date < until,
                         True if actor.reads_everything else T.organisation_id == actor.organisation)
                  .group_by(L.engineer, func.coalesce(L.team, T.team)))
        if team is not None:
            open_rows = open_rows.where(T.team == team)
            logged = logged.where(func.coalesce(L.team, T.team) == team)
        if engineer is not None:
            open_rows = open_rows.where(holder == engineer)
            logged = logged.where(L.engineer == engineer)
        async with self.engine.connect() as conn:
            held = (await conn.execute(open_rows)).mappings().all()
            hours = (await conn.execute(logged)).mappings().all()
        clock_calendars = {cid: await self._work_calendar(cid) for cid in {r["calendar_id"] for r in held}}
        board: dict[tuple[str | None, str], dict[str, Any]] = {}

        def row(team_: str | None, engineer_: str) -> dict[str, Any]:
            return board.setdefault((team_, engineer_), {
                "team": team_, "engineer": engineer_, "open_requests": 0, "weighted_load": 0, "paused": 0,
                "stalled": 0, "overdue": 0, "remaining_business_seconds": 0.0, "logged_hours": 0.0,
                "available_hours": 0.0 if engineer_ == UNASSIGNED else available_hours})

        for r in held:
            entry = row(r["team"], r["engineer"])
            entry["open_requests"] += 1
            entry["weighted_load"] += PRIORITY_WEIGHTS.get(r["priority"], 1)
            entry["paused"] += r["status"] == "paused"
            entry["stalled"] += r["stalled"] is not None
            clock_calendar = clock_calendars[r["calendar_id"]]
            if r["due_at"] <= now:
                entry["overdue"] += 1
                entry["remaining_business_seconds"] -= clock_calendar.between(r["due_at"], now).total_seconds()
            else:
                entry["remaining_business_seconds"] += clock_calendar.between(now, r["due_at"]).total_seconds()
        for r in hours:
            row(r["team"], r["engineer"])["logged_hours"] += round(int(r["minutes"]) / 60, 2)
        engineers = sorted(board.values(), key=lambda e: (e["team"] or "", e["engineer"]))
        teams: dict[str | None, dict[str, Any]] = {}
        for e in engineers:
            t = teams.setdefault(e["team"], {"team": e["team"], "engineers": 0, "open_requests": 0,
                                              "weighted_load": 0, "paused": 0, "stalled": 0, "overdue": 0,
                                              "remaining_business_seconds": 0.0, "logged_hours": 0.0,
                                              "available_hours": 0.0})
            t["engineers"] += e["engineer"] != UNASSIGNED
            for key in ("open_requests", "weighted_load", "paused", "stalled", "overdue", "remaining_business_seconds",
                        "logged_hours", "available_hours"):
                t[key] += e[key]
        for e in [*engineers, *teams.values()]:
            e["logged_hours"] = round(e["logged_hours"], 2)
            e["available_hours"] = round(e["available_hours"], 2)
            e["utilisation_percent"] = (round(100 * e["logged_hours"] / e["available_hours"], 1)
                                        if e["available_hours"] else None)
        return {"since": since, "until": until, "calendar": {"calendar_id": spec["calendar_id"],
                                                             "version": spec["version"]},
                "available_hours_per_engineer": available_hours, "engineers": engineers,
                "teams": sorted(teams.values(), key=lambda t: t["team"] or "")}

    async def what_if(self, actor: Actor, *, since: datetime, until: datetime, draft: dict[str, Any],
                      calendar: dict[str, Any] | None, only_matching: bool, limit: int, now: datetime
                      ) -> dict[str, Any]:
        """Clocks started in [since, until) replayed under a draft policy (and calendar): verdicts as they are and
        as they would be now, request by request, and the compliance of each. Nothing is stored or published."""
        try:
            policy = policies.Policy.from_spec("draft", 0, draft)
        except InvalidInput as exc:
            raise InvalidInput(exc.detail, field=f"policy.{exc.field}") from exc
        try:
            calendar_spec = WorkCalendar.from_spec(calendar).to_spec() if calendar is not None else None
        except InvalidInput as exc:
            raise InvalidInput(exc.detail, field=f"calendar.{exc.field}") from exc
        query = (select(T.request_id).where(T.target == "resolution", T.started_at >= since, T.started_at < until,
                                            self._scope(actor))
                 .order_by(T.started_at, T.request_id))
        async with self.engine.connect() as conn:
            ids = (await conn.execute(query)).scalars().all()
        compared: list[dict[str, Any]] = []
        considered, truncated = 0, False
        tally = {side: {name: {"decided": 0, "met_on_time": 0} for name in clocks.TARGETS}
                 for side in ("actual", "what_if")}
        for request_id in ids:
            records = await self.store.load(request_id)
            live = fold(clocks.evolve, records) if records and records[0].stream_type == "sla_clock" else None
            if live is None or live.cancelled:
                continue
            if only_matching and not policy.matches(live.kind, live.priority, live.customer_tier, live.service):
                continue
            if considered == limit:
                truncated = True
                break
            considered += 1
            replayed = whatif.replay([r.event for r in records], policy, calendar_spec, now)  # type: ignore[misc]
            if replayed is None:
                continue
            actual, would = whatif.verdicts(live, now), whatif.verdicts(replayed, now)
            for side, verdict in (("actual", actual), ("what_if", would)):
                for name, outcome in verdict.items():
                    if outcome != "running":
                        tally[side][name]["decided"] += 1
                        tally[side][name]["met_on_time"] += outcome == "met_on_time"
            compared.append({"request_id": request_id, "kind": live.kind, "priority": live.priority,
                             "team": live.team, "policy": {"policy_id": live.policy_id, "version": live.policy_version},
                             "actual": actual, "what_if": would, "changed": actual != would,
                             "what_if_due": {n: replayed.targets[n].met_due or replayed.due(n) for n in clocks.TARGETS}})
        summary = {side: {name: {**t, "compliance_percent": round(100 * t["met_on_time"] / t["decided"], 2)
                                 if t["decided"] else None} for name, t in sides.items()}
                   for side, sides in tally.items()}
        return {"since": since, "until": until, "requests": compared, "summary": summary,
                "truncated": truncated}

    # --- configuration -------------------------------------------------------------------------------
    async def _ids(self, stream_type: str) -> list[str]:
        async with self.engine.connect() as conn:
            result = await conn.execute(text("select distinct stream_id from events where stream_type = :t"),
                                        {"t": stream_type})
            return sorted(result.scalars())

    async def calendar(self, calendar_id: str) -> dict[str, Any]:
        history = [r for r in await self.store.load(calendar_id) if r.stream_type == "sla_calendar"]
        current = fold(calendars.evolve, history) or calendars.shipped_version(calendar_id)
        if current is None:
            raise NotFound(f"calendar {calendar_id} not found", field="calendar_id")
        calendar_from_spec(current.spec)  # stored specs were validated when written
        return {"calendar_id": current.calendar_id, "version": current.version, **current.spec}

    async def _work_calendar(self, calendar_id: str) -> Any:
        view = await self.calendar(calendar_id)
        return calendar_from_spec({k: v for k, v in view.items() if k not in ("calendar_id", "version")})

    async def calendars(self) -> list[dict[str, Any]]:
        ids = sorted({*calendars.shipped(), *await self._ids("sla_calendar")})
        return [await self.calendar(i) for i in ids]

    async def policies(self) -> list[dict[str, Any]]:
        book = dict(policies.DEFAULT_POLICIES)
        for policy_id in await self._ids("sla_policy"):
            book[policy_id] = fold(policies.evolve, await self.store.load(policy_id))
        return [{"policy_id": p.policy_id, "version": p.version, **p.to_spec()} for _, p in sorted(book.items())]


# Weights of open requests on the workload board: a P1 weighs as much as four P4s.
PRIORITY_WEIGHTS = {"P1": 4, "P2": 3, "P3": 2, "P4": 1}
UNASSIGNED = "(unassigned)"


def check_period(period: str | None) -> str | None:
    if period not in (None, "day", "week", "month", "quarter", "year"):
        raise InvalidInput("period is one of day, week, month, quarter, year", field="period")
    return period

