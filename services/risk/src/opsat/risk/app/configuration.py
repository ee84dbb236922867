"""The current configuration as commands need it: signal rules, emergency plans and rotas, folded from this
service's own event store (shipped defaults unless replaced), and what an activation names."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from opsat.common.domain import NotFound
from opsat.common.eventstore import StreamStore, fold
from opsat.risk.domain import commands as c
from opsat.risk.domain import plans, rotas, signals

EMERGENCIES = uuid.UUID("6f1c2a52-4d0e-4f55-9c55-2f4a1b7d0e31")  # namespace of derived emergency ids

_IDS = text("select distinct stream_id from events where stream_type = :t")


async def stream_ids(db: AsyncConnection | AsyncEngine, stream_type: str) -> list[str]:
    if isinstance(db, AsyncEngine):
        async with db.connect() as conn:
            return sorted((await conn.execute(_IDS, {"t": stream_type})).scalars())
    return sorted((await db.execute(_IDS, {"t": stream_type})).scalars())


async def _book(db: AsyncConnection | AsyncEngine, store: StreamStore, stream_type: str, evolve: Any,
                defaults: dict[str, Any]) -> dict[str, Any]:
    book = dict(defaults)
    for stream_id in await stream_ids(db, stream_type):
        book[stream_id] = fold(evolve, await store.load(stream_id))
    return book


async def rule_book(db: AsyncConnection | AsyncEngine, store: StreamStore) -> dict[str, signals.SignalRule]:
    return await _book(db, store, "risk_rule", signals.evolve, signals.DEFAULT_RULES)


async def plan_book(db: AsyncConnection | AsyncEngine, store: StreamStore) -> dict[str, plans.Plan]:
    return await _book(db, store, "risk_plan", plans.evolve_plan, plans.DEFAULT_PLANS)


async def rota_book(db: AsyncConnection | AsyncEngine, store: StreamStore) -> dict[str, rotas.Rota]:
    return await _book(db, store, "risk_rota", rotas.evolve, {})


def on_call(book: dict[str, rotas.Rota], plan: plans.Plan, team: str | None, at: datetime) -> dict[str, str | None]:
    """Role -> the person on call for it at `at`: the team's rota for that role (None when there is none)."""
    found: dict[str, str | None] = {}
    for step in plan.steps:
        role = step["role"]
        rota = next((r for _, r in sorted(book.items()) if r.role == role and r.team == team), None)
        found[role] = rota.on_call(at) if rota is not None else None
    return found


async def activation(db: AsyncConnection | AsyncEngine, store: StreamStore, *, emergency_id: str, plan_id: str,
                     reason: str, team: str | None, service: str | None, at: datetime,
                     trigger: dict[str, Any] | None = None) -> c.ActivateEmergency:
    """The command activating `plan_id` now, naming who is on call for each step's role."""
    plan = (await plan_book(db, store)).get(plan_id)
    if plan is None:
        raise NotFound(f"emergency plan {plan_id} not found", field="plan_id")
    return c.ActivateEmergency(emergency_id=emergency_id, plan=plan, on_call=on_call(await rota_book(db, store), plan,
                                                                                      team, at),
                               reason=reason, team=team, service=service, trigger=trigger)


def emergency_id_for(plan_id: str, request_id: str) -> str:
    """One emergency per plan and request: its breaches and its submission activate the plan once."""
    return str(uuid.uuid5(EMERGENCIES, f"{plan_id}:{request_id}"))
