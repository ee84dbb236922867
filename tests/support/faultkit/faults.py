"""The faults, each real: processes SIGKILLed, PostgreSQL stopped in immediate mode, a consumer group reset.

A fault is `async (stack, infra, scale) -> healed_at` (time.monotonic when the fault ended); the load
runs all along. `scale` (quick: short outages, full: the lengths of a real incident drill).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from opsat.common.testing.infra import LocalInfra
from opsat.intake.service import SERVICE

from .stack import Stack

WORKER = "worker"
WORKER_ID = "worker-0"  # static group membership: a restarted worker takes its partitions back at once


@dataclass(frozen=True)
class Scale:
    kafka_down_s: float
    postgres_down_s: float
    worker_kills: int
    api_kills: int
    between_kills_s: float


QUICK = Scale(kafka_down_s=3, postgres_down_s=2, worker_kills=1, api_kills=1, between_kills_s=1)
FULL = Scale(kafka_down_s=45, postgres_down_s=20, worker_kills=5, api_kills=3, between_kills_s=6)

Fault = Callable[[Stack, LocalInfra, Scale], Awaitable[float]]


async def kafka_killed(stack: Stack, infra: LocalInfra, scale: Scale) -> float:
    await asyncio.to_thread(infra.kill_kafka)
    await asyncio.sleep(scale.kafka_down_s)
    await infra.start_kafka_async()
    return time.monotonic()


async def postgres_stopped(stack: Stack, infra: LocalInfra, scale: Scale) -> float:
    await infra.stop_postgres_async(immediate=True)  # under load: mid-batch for the worker, mid-request for the API
    await asyncio.sleep(scale.postgres_down_s)
    await infra.start_postgres_async()
    return time.monotonic()


async def worker_killed(stack: Stack, infra: LocalInfra, scale: Scale) -> float:
    for i in range(scale.worker_kills):
        if i:
            await asyncio.sleep(scale.between_kills_s)
        stack.kill(WORKER)
        await asyncio.to_thread(stack.start, WORKER, instance_id=WORKER_ID)
    return time.monotonic()


async def api_killed(stack: Stack, infra: LocalInfra, scale: Scale) -> float:
    for i in range(scale.api_kills):
        if i:
            await asyncio.sleep(scale.between_kills_s)
        stack.kill("api")
        await asyncio.to_thread(stack.start, "api")
    return time.monotonic()


async def two_workers_leader_killed(stack: Stack, infra: LocalInfra, scale: Scale) -> float:
    """A second worker joins (partitions shared, relay on standby); the first, the relay's leader, is killed."""
    await asyncio.to_thread(stack.start, "worker-b", instance_id="worker-1")
    await asyncio.sleep(scale.between_kills_s)
    stack.kill(WORKER)
    healed = time.monotonic()  # nothing is restarted: the survivor must take over by itself
    await asyncio.sleep(scale.between_kills_s)
    # back to one worker under the usual name for the next fault
    await asyncio.to_thread(stack.start, WORKER, instance_id=WORKER_ID)
    stack.procs.pop("worker-b").terminate()
    return healed


async def group_reset(stack: Stack, infra: LocalInfra, scale: Scale) -> float:
    """The worker stopped, the projection's consumer group reset to the earliest offsets, the worker started:
    the whole topic is delivered again and must change nothing."""
    stack.kill(WORKER)
    settings = SERVICE.settings(kafka_bootstrap=stack.kafka_bootstrap, topic_namespace=stack.namespace)
    group = SERVICE.runner_config(settings, "requests").group_id
    topic = settings.topic("intake")
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, group_id=group, enable_auto_commit=False,
                                group_instance_id=WORKER_ID)  # takes the killed member's place at once
    await consumer.start()
    try:
        consumer.subscribe([topic])
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
        await consumer.commit({TopicPartition(topic, p): 0 for p in range(SERVICE.partitions)})
    finally:
        await consumer.stop()
    await asyncio.to_thread(stack.start, WORKER, instance_id=WORKER_ID)
    return time.monotonic()


# Quick (inside `make test`): the faults that heal in seconds; a Kafka restart alone takes longer than the
# rest together, and tests/integration/intake/test_resilience.py already stops Kafka under commands.
QUICK_FAULTS: list[tuple[str, Fault]] = [("worker killed", worker_killed), ("postgres stopped", postgres_stopped),
                                         ("api killed", api_killed)]
FULL_FAULTS: list[tuple[str, Fault]] = [("kafka killed", kafka_killed), ("postgres stopped", postgres_stopped),
                                        ("worker killed", worker_killed), ("api killed", api_killed),
                                        ("two workers, leader killed", two_workers_leader_killed),
                                        ("group reset", group_reset)]
