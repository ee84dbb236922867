"""`/metrics` shows a consumer group's lag rising while its consumer is stopped, measured by the worker from
Kafka's committed offsets, and falling back to 0 once the consumer catches up."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from opsat.common.testing.helpers import wait_until


def group_lag(consumer: str, topic: str) -> float:
    return REGISTRY.get_sample_value("opsat_consumer_group_lag", {"consumer": consumer, "topic": topic}) or 0.0


async def _at_least(consumer: str, topic: str, value: float) -> bool:
    return group_lag(consumer, topic) >= value


async def _zero(consumer: str, topic: str) -> bool:
    return group_lag(consumer, topic) == 0


@pytest.mark.intake_settings(group_lag_interval_s=0.2)
async def test_lag_rises_while_the_consumer_is_stopped_and_falls_when_it_runs(intake):
    topic = intake.settings.topic("intake")
    async with intake.worker(only=("relay", "group-lag")):  # the requests projection is not running
        for i in range(5):
            await intake.submit(title=f"first {i}")
        await wait_until(lambda: _at_least("requests", topic, 5), timeout=30, what="lag of the stopped consumer")
        for i in range(5):
            await intake.submit(title=f"second {i}")
        await wait_until(lambda: _at_least("requests", topic, 10), timeout=30, what="lag still rising")
    async with intake.worker(only=("relay", "group-lag", "projection:requests")):
        await wait_until(lambda: _zero("requests", topic), timeout=60, what="lag back to 0")
