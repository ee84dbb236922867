"""What an operator sees during faults: the relay reports a Kafka outage at once (one warning, a gauge, a
backlog that grows), and consumer lag series follow the partitions a worker owns after a rebalance."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from opsat.common.consumer import ProjectionRunner
from opsat.common.db import create_engine
from opsat.common.testing.helpers import scalar, wait_until
from opsat.common.worker import run_loops
from opsat.intake.projections.requests import RequestsProjection
from opsat.intake.service import SERVICE


def _gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_relay_reports_a_kafka_outage_while_it_lasts(intake, local_infra, caplog):
    topic = intake.settings.topic("intake")
    db = intake.settings.database_url
    caplog.set_level(logging.INFO, logger="opsat.common.outbox")
    async with intake.worker(only=("relay",)):
        await intake.submit(title="before")
        await wait_until(lambda: _equals(db, "select count(*) from outbox", 0), timeout=30, what="outbox drained")
        await local_infra.stop_kafka_async()
        try:
            for i in range(30):
                await intake.submit(title=f"during {i}")

            async def reported() -> bool:
                return (_gauge("opsat_kafka_unreachable", topic=topic) == 1
                        and _gauge("opsat_outbox_backlog", topic=topic) == 30)

            await wait_until(reported, timeout=25, what="outage gauge 1 and backlog 30")
            await asyncio.sleep(8)  # several delivery timeouts and retries
            warnings = [r for r in caplog.records if r.name == "opsat.common.outbox" and r.levelno >= logging.WARNING]
            assert len(warnings) == 1, [r.getMessage() for r in warnings]
        finally:
            await local_infra.start_kafka_async()
        await wait_until(lambda: _equals(db, "select count(*) from outbox", 0), timeout=60, what="outbox drained")

        async def healed() -> bool:
            return (_gauge("opsat_kafka_unreachable", topic=topic) == 0
                    and _gauge("opsat_outbox_backlog", topic=topic) == 0)

        await wait_until(healed, timeout=10, what="gauges back to 0")


async def _equals(db: str, sql: str, value: int) -> bool:
    return await scalar(db, sql) == value


def _lag_partitions(projection: str, topic: str) -> set[int]:
    out = set()
    for metric in REGISTRY.collect():
        if metric.name != "opsat_consumer_lag":
            continue
        for sample in metric.samples:
            labels = sample.labels
            if labels.get("projection") == projection and labels.get("topic", topic) == topic:
                out.add(int(labels["partition"]))
    return out


async def test_lag_series_of_partitions_lost_in_a_rebalance_are_removed(intake):
    topic = intake.settings.topic("intake")
    async with intake.worker(only=("relay",)):
        for i in range(60):  # every partition gets some
            await intake.submit(title=f"r{i}")
        await wait_until(lambda: _equals(intake.settings.database_url, "select count(*) from outbox", 0),
                         timeout=30, what="outbox drained")
    config = SERVICE.runner_config(intake.settings, "requests")
    engine = create_engine(intake.settings.database_url, pool_size=2)
    runner = ProjectionRunner(engine, RequestsProjection(topic), config)
    stop = asyncio.Event()
    task = asyncio.create_task(run_loops([("projection:requests", runner.run)], stop))
    other = AIOKafkaConsumer(topic, bootstrap_servers=intake.settings.kafka_bootstrap, group_id=config.group_id,
                             enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    try:
        await wait_until(lambda: _async(_lag_partitions("requests", topic) == set(range(SERVICE.partitions))),
                         timeout=30, what="lag of every partition")
        await other.start()
        taken: set[TopicPartition] = set()

        async def other_took_some() -> bool:
            await other.getmany(timeout_ms=200)
            taken.update(other.assignment())
            return bool(other.assignment())

        await wait_until(other_took_some, timeout=30, what="the second member's assignment")
        kept = set(range(SERVICE.partitions)) - {tp.partition for tp in other.assignment()}

        async def series_follow() -> bool:
            await other.getmany(timeout_ms=200)  # keep the second member alive in the group
            return _lag_partitions("requests", topic) == kept

        await wait_until(series_follow, timeout=20, what=f"lag series only for partitions {sorted(kept)}")
    finally:
        await other.stop()
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await engine.dispose()


async def _async(value: bool) -> bool:
    return value
