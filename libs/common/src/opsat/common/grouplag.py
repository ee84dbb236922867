"""Consumer-group lag as Kafka sees it: the end of each partition minus the group's committed offset.

A consumer reports its own lag (`opsat_consumer_lag`) only while it runs; a stopped, stuck or crashed
consumer reports nothing. This measures every consumer group of the service from the outside, so its lag
keeps rising on `/metrics` while the consumer is away. `opsat-<service> lag` prints the same figures.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from opsat.common import observability as obs

if TYPE_CHECKING:
    from opsat.common.service import Service
    from opsat.common.settings import ServiceSettings

log = logging.getLogger("opsat.grouplag")


@dataclass(frozen=True)
class PartitionLag:
    consumer: str
    group: str
    partition: TopicPartition
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


async def group_lags(service: Service, settings: ServiceSettings) -> list[PartitionLag]:
    """Committed offset and end of every partition each consumer of the service reads."""
    topics = sorted({settings.topic(s) for cls in service.consumer_classes() for s in cls.sources})
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    ends_reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await admin.start()
    try:
        await ends_reader.start()
        described = await admin.describe_topics(topics)
        partitions = {t["topic"]: [TopicPartition(t["topic"], p["partition"]) for p in t["partitions"]]
                      for t in described if not t.get("error_code")}
        every = [tp for tps in partitions.values() for tp in tps]
        ends = await ends_reader.end_offsets(every) if every else {}
        out: list[PartitionLag] = []
        for cls in service.consumer_classes():
            group = service.runner_config(settings, cls.name).group_id
            committed = await admin.list_consumer_group_offsets(group)
            for topic in (settings.topic(s) for s in cls.sources):
                for tp in sorted(partitions.get(topic, ()), key=lambda tp: tp.partition):
                    offset = committed.get(tp)
                    out.append(PartitionLag(cls.name, group, tp, max(0, offset.offset) if offset else 0, ends[tp]))
        return out
    finally:
        await ends_reader.stop()
        await admin.close()


async def run_group_lag(service: Service, settings: ServiceSettings, stop: asyncio.Event,
                        interval_s: float) -> None:
    """Publish `opsat_consumer_group_lag` every `interval_s` until `stop` (a worker loop)."""
    while not stop.is_set():
        try:
            totals: dict[tuple[str, str], int] = {}
            for p in await group_lags(service, settings):
                key = (p.consumer, p.partition.topic)
                totals[key] = totals.get(key, 0) + p.lag
            for (consumer, topic), lag in totals.items():
                obs.CONSUMER_GROUP_LAG.labels(consumer=consumer, topic=topic).set(lag)
        except (TimeoutError, KafkaError, OSError) as exc:  # Kafka away: the relay's gauge says so
            log.debug("consumer group lag not measured: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            pass
