"""Set-up and polling helpers shared by the SLA monitor's tests on the real stack."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from opsat.common.testing.helpers import rows

AGENT = ("bob", "ops", "agent")


async def eventually(check, timeout: float = 40.0):  # type: ignore[no-untyped-def]
    """Poll `check` until it returns something truthy (returned); fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await check()):
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)
    return result


async def define_policy(sla, policy_id: str, **spec: Any) -> None:  # type: ignore[no-untyped-def]
    """A P2 standard-tier policy on the 24x7 calendar; targets of 10 h and 20 h unless `spec` names others."""
    body = {"priorities": ["P2"], "customer_tiers": ["standard"], "calendar_id": "24x7",
            "first_response_seconds": 36000, "resolution_seconds": 72000, **spec}
    r = await sla.client.post(f"/api/v1/policies/{policy_id}/define", json=body, headers=sla.token("root", "ops", "admin"))
    assert r.status_code == 200, r.text


async def clock(sla, request_id: str) -> dict | None:  # type: ignore[no-untyped-def]
    r = await sla.client.get(f"/api/v1/clocks/{request_id}", headers=sla.token(*AGENT))
    return r.json() if r.status_code == 200 else None


async def intake_event(intake, request_id: str, name: str) -> asyncpg.Record:  # type: ignore[no-untyped-def]
    [row] = await rows(intake.settings.database_url, "select event_id, data::text from events where stream_id = $1"
                       " and event_type = $2", request_id, f"opsat.intake.request.{name}")
    return row


async def pending_deadlines(sla, kind: str, request_id: str) -> int:  # type: ignore[no-untyped-def]
    """The timers of `kind` still scheduled for the request: none left means none can fire."""
    return len(await rows(sla.settings.database_url, "select 1 from deadlines where kind = $1 and stream_id = $2",
                          kind, request_id))


async def topics_visible(sla, kafka_bootstrap: str) -> None:  # type: ignore[no-untyped-def]
    """Both topics exist and are in the broker's metadata before two replicas join a group: a group leader that
    assigns while a topic has no metadata yet leaves it unassigned until the next metadata refresh."""
    await sla.service.ensure_topics(sla.settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, metadata_max_age_ms=200)
    await consumer.start()

    async def visible(topic: str) -> bool:
        if consumer.partitions_for_topic(topic):
            return True
        await consumer.topics()  # fetches fresh metadata
        return False

    try:
        for topic in (sla.settings.topic("sla"), sla.settings.topic("intake")):
            await eventually(lambda t=topic: visible(t))
    finally:
        await consumer.stop()
