"""A consumer started before the topic it reads exists (another service's, started later: `make run` starts
intake's worker after the SLA monitor's) reads it once it is created, within `OPSAT_KAFKA_METADATA_MAX_AGE_MS`."""

from __future__ import annotations

import asyncio

from opsat.common.testing.helpers import wait_until
from opsat.sla_monitor.service import SERVICE as SLA


async def test_a_topic_created_after_the_consumer_started_is_read(intake, run_service):
    sla = await run_service(SLA, kafka_metadata_max_age_ms=1000)
    agent = sla.token("bob", "ops", "agent")
    async with sla.worker(only=("reaction:clock_driver", "relay")):  # intake's topic does not exist yet
        await asyncio.sleep(3)  # the clock driver has joined its group with nothing to read
        async with intake.worker(only=("relay",)):  # creates intake's topic and publishes into it
            rid = await intake.submit()

            async def clock_started() -> bool:
                return (await sla.client.get(f"/api/v1/clocks/{rid}", headers=agent)).status_code == 200

            await wait_until(clock_started, timeout=30, what="a clock for the request submitted after the start")
