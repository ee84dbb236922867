"""A consumer started before the topic it reads exists (another service's, started later: `make run` starts
intake's worker after the SLA monitor's) reads it once it is created, within `OPSAT_KAFKA_METADATA_MAX_AGE_MS`.
And a topic a worker creates itself is in the broker's metadata, every partition led, when `ensure_topics` returns."""

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


async def test_ensure_topics_returns_once_a_consumer_subscribing_next_is_assigned_every_partition(
        kafka_bootstrap: str, topic_namespace: str) -> None:
    """A worker ensures its topics and subscribes right away. Had it subscribed before the broker's metadata
    showed the new topic, it would have been assigned nothing for up to its metadata max age (30 s here)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    from opsat.common.kafka import ensure_topics

    topics = {f"{topic_namespace}.fresh{i}.events": 6 for i in range(4)}
    await ensure_topics(kafka_bootstrap, topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(sorted(topics))
    finally:
        await admin.close()
    assert {t["topic"]: sorted(p["partition"] for p in t["partitions"] if p["leader"] >= 0) for t in described} == {
        name: list(range(6)) for name in topics}
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=f"{topic_namespace}.fresh",
                                metadata_max_age_ms=30_000, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.subscribe(sorted(topics))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10  # a join takes well under a second; a missed topic waits for the 30 s refresh
        while len(consumer.assignment()) < 24:
            assert loop.time() < deadline, f"assigned only {sorted(consumer.assignment())}"
            await consumer.getmany(timeout_ms=200)
    finally:
        await consumer.stop()
