"""The signal driver against the real store, fed well-formed upstream CloudEvents directly (no broker: what is
judged here is the driver's memory and its commands, each event applied in its own transaction as the runner
does): breaches arriving out of time order still fire; a signal after the risk was closed raises a new risk,
never reopening the old one; two P1 breaches of one request activate one emergency.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from risk_harness import OFFICER, Risk

from opsat.common.consumer import ReceivedEvent
from opsat.common.db import create_engine
from opsat.common.eventstore import EventStore
from opsat.common.testing.helpers import scalar
from opsat.risk.app.reactions import SignalDriver
from opsat.risk.service import SERVICE as RISK

T0 = datetime.now(UTC) - timedelta(hours=1)


def upstream(event_type: str, request_id: str, sequence: int, **data: Any) -> ReceivedEvent:
    data = {"request_id": request_id, **data}
    return ReceivedEvent(id=str(uuid.uuid4()), type=f"{event_type}.v1", event_type=event_type, schema_version=1,
                         source="/opsat/sla", subject=request_id, sequence=sequence, time=datetime.now(UTC), data=data,
                         tenant="acme", actor="system", correlation_id=None)


def started(rid: str, minutes: int, priority: str = "P2") -> ReceivedEvent:
    return upstream("opsat.sla.clock.started", rid, 1, at=(T0 + timedelta(minutes=minutes)).isoformat(),
                    kind="incident", priority=priority, team="network", service=None)


def breached(rid: str, minutes: int, target: str = "resolution", sequence: int = 2) -> ReceivedEvent:
    return upstream("opsat.sla.clock.breached", rid, sequence, at=(T0 + timedelta(minutes=minutes)).isoformat(),
                    target=target, due_at=(T0 + timedelta(minutes=minutes)).isoformat())


async def test_out_of_order_breaches_fire_a_closed_risk_is_never_reopened_and_p1_activates_once(run_service):
    risk: Risk = await run_service(RISK, harness=Risk)
    engine = create_engine(risk.settings.database_url, pool_size=2)
    driver = SignalDriver("intake", "sla")
    driver.handler = RISK.command_handler(risk.settings, EventStore(engine, RISK.registry()))

    async def feed(*events: ReceivedEvent) -> None:
        for received in events:
            async with engine.begin() as conn:
                await driver.apply(conn, received)

    async def risks() -> list[str]:
        found = await scalar(risk.settings.database_url, "select array_agg(stream_id order by position) from events"
                             " where event_type = 'opsat.risk.risk.identified'")
        return found or []

    try:
        rids = [str(uuid.uuid4()) for _ in range(5)]
        await feed(*(started(r, i) for i, r in enumerate(rids)))
        # The newest breach arrives second: the third to arrive is not the latest, and the rule fires all the same.
        first_breaches = [breached(rids[0], 10), breached(rids[1], 30), breached(rids[2], 20)]
        await feed(*first_breaches)
        [first] = await risks()
        evidence = await scalar(risk.settings.database_url, "select data->'evidence' from events where stream_id = $1"
                                " and event_type = 'opsat.risk.risk.signal_recorded'", first)
        assert sorted(evidence.strip("[]").replace('"', "").split(", ")) == sorted(e.id for e in first_breaches)

        r = await risk.client.post(f"/api/v1/risks/{first}/close", json={"reason": "network fixed"},
                                   headers=risk.as_(OFFICER))
        assert r.status_code == 200, r.text
        await feed(breached(rids[3], 40))  # still three or more in the window: a new risk, the closed one stays
        assert (await risks())[0] == first and len(await risks()) == 2
        closed_risk = "select count(*) from events where stream_id = $1"
        assert await scalar(risk.settings.database_url, closed_risk, first) == 4  # identified, signal, assessed, closed

        p1 = str(uuid.uuid4())
        await feed(started(p1, 50, priority="P1"), breached(p1, 51, "response"), breached(p1, 52, "resolution", 3))
        assert await scalar(risk.settings.database_url, "select count(*) from events where event_type = "
                            "'opsat.risk.emergency.activated'") == 1
    finally:
        await engine.dispose()
