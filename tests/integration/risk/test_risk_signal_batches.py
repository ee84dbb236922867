"""Batched signal evaluation decides exactly as one event at a time, on the real store: the same deterministic
stream of 600 upstream events (intake, SLA monitor, feedback; streams interleaved, some late) is fed to two
risk services' drivers, one event per transaction, and in consumer batches of varying size. Both end with the
same risks (ids, subjects, rules, evidence, scores) and the same emergencies (ids, triggers); the batched one
re-scores a subject at most once per batch and so records fewer signals.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from risk_harness import Risk
from risk_upstream import Shape, upstream

from opsat.common.consumer import ReceivedEvent
from opsat.common.db import asyncpg_dsn, create_engine
from opsat.common.eventstore import EventStore, fold
from opsat.common.testing.helpers import rows, scalar
from opsat.risk.app.reactions import SignalDriver
from opsat.risk.domain import register
from opsat.risk.service import SERVICE as RISK

START = datetime.now(UTC) - timedelta(days=12)


async def drive(risk: Risk, batches: list[list[ReceivedEvent]], count: bool = True) -> list[dict[str, int]]:
    """Feeds each batch in its own transaction, as the runner does; with `count`, returns the signals recorded
    per risk and batch (read on one connection kept open for the run)."""
    engine = create_engine(risk.settings.database_url, pool_size=2)
    driver = SignalDriver("intake", "sla", "feedback")
    store = EventStore(engine, RISK.registry())
    driver.handler = RISK.command_handler(risk.settings, store)
    per_batch: list[dict[str, int]] = []
    reader = await asyncpg.connect(asyncpg_dsn(risk.settings.database_url)) if count else None
    try:
        for batch in batches:
            before = await signals_per_risk(reader) if reader else {}
            async with engine.begin() as conn:
                await driver.apply_batch(conn, batch)
            if reader:
                after = await signals_per_risk(reader)
                per_batch.append({k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)})
    finally:
        if reader:
            await reader.close()
        await engine.dispose()
    return per_batch


async def signals_per_risk(conn: asyncpg.Connection) -> dict[str, int]:
    found = await conn.fetch("select stream_id, count(*) as n from events where event_type ="
                             " 'opsat.risk.risk.signal_recorded' group by stream_id")
    return {r["stream_id"]: r["n"] for r in found}


async def recorded_signals(risk: Risk) -> int:
    return await scalar(risk.settings.database_url, "select count(*) from events where event_type ="
                        " 'opsat.risk.risk.signal_recorded'")


async def outcome(risk: Risk) -> tuple[dict[str, Any], dict[str, Any]]:
    engine = create_engine(risk.settings.database_url, pool_size=1)
    store = EventStore(engine, RISK.registry())
    try:
        ids = [r["stream_id"] for r in await rows(risk.settings.database_url, "select distinct stream_id from events"
                                                  " where stream_type = 'risk'")]
        risks = {}
        for risk_id in ids:
            state = fold(register.evolve, await store.load(risk_id))
            risks[risk_id] = (state.subject_type, state.subject, state.rule_id, state.status, frozenset(state.evidence),
                              state.likelihood, state.impact, state.score, state.level)
    finally:
        await engine.dispose()
    emergencies = {r["stream_id"]: r["trigger"] for r in await rows(
        risk.settings.database_url, "select stream_id, data->>'trigger' as trigger from events"
        " where event_type = 'opsat.risk.emergency.activated'")}
    return risks, emergencies


async def test_batches_decide_as_one_event_at_a_time_with_one_re_score_per_subject_and_batch(run_service):
    events = [event for _, event in upstream(600, START, seed=16, shape=Shape(answer=0.6))]
    one_by_one: Risk = await run_service(RISK, harness=Risk)
    batched: Risk = await run_service(RISK, harness=Risk)

    await drive(one_by_one, [[e] for e in events], count=False)  # only its outcome is compared
    rnd, batches, i = random.Random(3), [], 0
    while i < len(events):
        size = rnd.choice((1, 7, 40, 120, 300))
        batches.append(events[i:i + size])
        i += size
    per_batch = await drive(batched, batches)

    risks, emergencies = await outcome(one_by_one)
    assert await outcome(batched) == (risks, emergencies)
    # The stream exercises every rule and both ways to a P1 emergency (a breach, an override of an incident).
    assert {r[2] for r in risks.values()} == {"sla-breaches-team", "sla-breaches-service", "csat-team",
                                             "incidents-service", "p1-breach"}
    assert any('"opsat.intake.request.priority_overridden"' in t for t in emergencies.values())
    assert any('"opsat.sla.clock.breached"' in t for t in emergencies.values())
    assert all(n == 1 for recorded in per_batch for n in recorded.values())
    assert await recorded_signals(batched) < await recorded_signals(one_by_one)
