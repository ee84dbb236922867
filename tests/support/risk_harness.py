"""The risk service under test: a harness with the people of the role tests and polling helpers."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer

from opsat.common.testing.helpers import rows, scalar
from opsat.common.testing.service import ServiceHarness

# (sub, org, roles) for `risk.token`
AGENT = ("agent-1", "ops", "agent")
LEAD = ("lead-1", "ops", "team_lead")
MANAGER = ("mgr-1", "ops", "manager")
OFFICER = ("rita", "ops", "risk_officer")
ADMIN = ("root", "ops", "admin")
AUDITOR = ("audit-1", "ops", "auditor")
REQUESTER = ("alice", "acme", "requester")


class Risk(ServiceHarness):
    def as_(self, who: tuple[str, str, str]) -> dict[str, str]:
        return self.token(*who)

    async def events(self) -> int:
        return await scalar(self.settings.database_url, "select count(*) from events")

    async def eventually(self, check: Any, timeout: float = 40.0) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while not (result := await check()):
            assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
            await asyncio.sleep(0.1)
        return result

    async def get(self, path: str, who: tuple[str, str, str] = AUDITOR, **params: Any) -> Any:
        r = await self.client.get(path, params=params, headers=self.as_(who))
        assert r.status_code == 200, r.text
        return r.json()


async def topics_visible(*harnesses: ServiceHarness) -> None:
    """Every service's topic exists and is in the broker's metadata before any worker's group assigns: a group
    leader that assigns while a topic has no metadata yet leaves it unassigned until the next metadata refresh."""
    for harness in harnesses:
        await harness.service.ensure_topics(harness.settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=harnesses[0].settings.kafka_bootstrap, metadata_max_age_ms=200)
    await consumer.start()

    async def visible(topic: str) -> bool:
        if consumer.partitions_for_topic(topic):
            return True
        await consumer.topics()
        return False

    try:
        for topic in (h.settings.topic(h.service.name) for h in harnesses):
            deadline = asyncio.get_running_loop().time() + 30
            while not await visible(topic):
                assert asyncio.get_running_loop().time() < deadline, f"{topic} not visible"
                await asyncio.sleep(0.1)
    finally:
        await consumer.stop()


async def define_policy(sla, policy_id: str, priority: str, response_s: float, resolution_s: float) -> None:  # type: ignore[no-untyped-def]
    body = {"priorities": [priority], "customer_tiers": ["standard"], "calendar_id": "24x7",
            "first_response_seconds": response_s, "resolution_seconds": resolution_s}
    r = await sla.client.post(f"/api/v1/policies/{policy_id}/define", json=body,
                              headers=sla.token("root", "ops", "admin"))
    assert r.status_code == 200, r.text


async def breach_ids(sla, team_requests: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    found = await rows(sla.settings.database_url, "select event_id::text from events where event_type = "
                       "'opsat.sla.clock.breached' and stream_id = any($1::text[]) order by position", team_requests)
    return [r["event_id"] for r in found]
