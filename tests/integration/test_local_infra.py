"""The infrastructure fixtures, against the real local Kafka and PostgreSQL."""

import socket

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from opsat.common.testing.infra import (
    LocalInfra,
    consume_all,
    delete_topics_under,
    namespaces_made,
    new_topic_namespace,
)


async def query(url: str, *statements: str):
    """Run the statements in one transaction; return the first column of the last one's first row."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                result = await conn.execute(text(statement))
            return result.scalar() if result.returns_rows else None
    finally:
        await engine.dispose()


async def produce(bootstrap: str, topic: str, *values: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for value in values:  # one key: one partition, so the order is kept
            await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def test_fresh_database_accepts_queries(database_url: str) -> None:
    assert database_url.startswith("postgresql+asyncpg://")
    name = database_url.rsplit("/", 1)[1]
    assert name.startswith("opsat_test_")
    assert await query(database_url, "SELECT current_database()") == name
    assert await query(database_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
    assert await query(database_url, "CREATE TABLE t (v int)", "INSERT INTO t VALUES (41)", "SELECT v + 1 FROM t") == 42


async def test_each_database_url_is_a_separate_database(database_url: str, database_factory) -> None:
    other_url = await database_factory()
    assert other_url != database_url
    await query(database_url, "CREATE TABLE only_here (v int)")
    assert await query(database_url, "SELECT to_regclass('public.only_here') IS NOT NULL") is True
    assert await query(other_url, "SELECT to_regclass('public.only_here') IS NOT NULL") is False


async def test_message_produced_is_consumed_back(kafka_bootstrap: str, kafka_admin, topic_namespace: str) -> None:
    topic = f"{topic_namespace}.infra.events"
    await kafka_admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    await produce(kafka_bootstrap, topic, b"one", b"two")
    records = await consume_all(kafka_bootstrap, topic, min_count=2)
    assert [r.value for r in records] == [b"one", b"two"]


async def test_a_namespaces_topics_are_deleted_and_no_other(kafka_bootstrap: str, kafka_admin,
                                                             topic_namespace: str) -> None:
    """What the session's end does with the namespaces its tests made (the `kafka_bootstrap` fixture)."""
    mine = [f"{topic_namespace}.intake.events", f"{topic_namespace}.intake.dlq"]
    other = f"{new_topic_namespace()}.intake.events"  # another namespace, with this one as a prefix of no name
    await kafka_admin.create_topics([NewTopic(name, 1, 1) for name in [*mine, other]])
    assert topic_namespace in namespaces_made()
    assert sorted(await delete_topics_under(kafka_bootstrap, [topic_namespace])) == sorted(mine)
    remaining = set(await kafka_admin.list_topics())
    assert other in remaining and not remaining & set(mine)


def test_topic_namespace_is_a_topic_prefix(topic_namespace: str) -> None:
    assert topic_namespace.startswith("t") and len(topic_namespace) == 9


async def test_broker_serves_earlier_messages_after_restart(
    local_infra: LocalInfra, kafka_bootstrap: str, topic_namespace: str
) -> None:
    topic = f"{topic_namespace}.infra.events"  # created on first use
    await produce(kafka_bootstrap, topic, b"before the outage")
    host, port = kafka_bootstrap.rsplit(":", 1)

    await local_infra.stop_kafka_async()
    try:
        with pytest.raises(OSError):
            socket.create_connection((host, int(port)), timeout=1).close()
    finally:
        await local_infra.start_kafka_async()

    records = await consume_all(kafka_bootstrap, topic, min_count=1)
    assert [r.value for r in records] == [b"before the outage"]


def test_external_infrastructure_cannot_be_restarted() -> None:
    external = LocalInfra(database_admin_url="postgresql://u@db:5432/postgres", kafka_bootstrap="kafka:9092")
    assert not external.can_restart
    with pytest.raises(RuntimeError, match="external"):
        external.stop_kafka()
