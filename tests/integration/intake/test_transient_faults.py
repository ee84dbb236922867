"""Transient faults are not poison, and read models never move backwards (real PostgreSQL stopped, real locks).

A PostgreSQL outage in the middle of a batch, or a lock that times out on a live connection, must delay
events, never park them; a parked event re-driven after newer ones must not roll a row back.
"""

from __future__ import annotations

import asyncio
import json

from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from opsat.common.consumer import ProjectionRunner, decode_record, redrive
from opsat.common.db import create_engine
from opsat.common.testing.helpers import scalar, wait_until
from opsat.common.testing.infra import consume_all, consume_to_end
from opsat.common.worker import run_loops
from opsat.intake.projections.requests import RequestsProjection
from opsat.intake.service import SERVICE


class HeldAtFirstBatch(RequestsProjection):
    """The real projection, held inside its first batch (connection taken, transaction open) until released."""

    def __init__(self, topic: str) -> None:
        super().__init__(topic)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def apply_batch(self, conn, batch) -> None:  # type: ignore[no-untyped-def]
        if not self.entered.is_set():
            self.entered.set()
            await self.release.wait()
        await super().apply_batch(conn, batch)


class ImpatientForLocks(RequestsProjection):
    """The real projection with a short lock timeout, so a held lock fails it with a real PostgreSQL error."""

    async def apply_batch(self, conn, batch) -> None:  # type: ignore[no-untyped-def]
        await conn.execute(text("set local lock_timeout = '100ms'"))
        await super().apply_batch(conn, batch)


async def _fill_topic(intake, requests: int) -> list[str]:  # type: ignore[no-untyped-def]
    """Submit and accept `requests` requests; the relay alone puts their events on the topic."""
    agent = intake.token("agent-1", "ops", "agent")
    async with intake.worker(only=("relay",)):
        ids = [await intake.submit(title=f"r{i}") for i in range(requests)]
        for rid in ids:
            r = await intake.client.post(f"/api/v1/requests/{rid}/accept", json={"team": "desk"}, headers=agent)
            assert r.status_code == 200, r.text
        await wait_until(lambda: _outbox_empty(intake.settings.database_url), timeout=30, what="outbox drained")
    return ids


async def _outbox_empty(db: str) -> bool:
    return await scalar(db, "select count(*) from outbox") == 0


async def _applied(db: str, count: int) -> bool:
    try:
        return await scalar(db, "select count(*) from read_model.processed_events") >= count
    except OSError:  # PostgreSQL still recovering
        return False


async def _at_least(runner: ProjectionRunner, retries: int) -> bool:
    return runner.stats.retries >= retries


async def _parked(intake) -> list:  # type: ignore[no-untyped-def]
    dlq = SERVICE.dlq_topic(intake.settings, "requests")
    return await consume_to_end(intake.settings.kafka_bootstrap, dlq)


async def test_postgres_stopped_mid_batch_delays_events_and_parks_none(intake, local_infra):
    ids = await _fill_topic(intake, 20)
    db = intake.settings.database_url
    await SERVICE.ensure_topics(intake.settings)
    projection = HeldAtFirstBatch(intake.settings.topic("intake"))
    engine = create_engine(db, pool_size=2)
    runner = ProjectionRunner(engine, projection, SERVICE.runner_config(intake.settings, "requests"))
    stop = asyncio.Event()
    worker = asyncio.create_task(run_loops([("projection:requests", runner.run)], stop))
    try:
        await asyncio.wait_for(projection.entered.wait(), timeout=30)
        await local_infra.stop_postgres_async(immediate=True)
        try:
            projection.release.set()
            await wait_until(lambda: _at_least(runner, 3), timeout=30, what="retry rounds against the dead database")
        finally:
            await local_infra.start_postgres_async()
        await wait_until(lambda: _applied(db, 40), timeout=60, what="every event applied")
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=30)
        await engine.dispose()
    assert await _parked(intake) == []  # nothing healthy on the dead-letter topic
    assert await scalar(db, "select count(*) from read_model.requests where version = 2") == len(ids)
    assert await scalar(db, "select count(*) from read_model.timeline") == 40


async def test_a_lock_timeout_on_a_live_connection_is_retried_not_parked(intake, local_infra):
    await _fill_topic(intake, 10)
    db = intake.settings.database_url
    await SERVICE.ensure_topics(intake.settings)
    engine = create_engine(db, pool_size=2)
    runner = ProjectionRunner(engine, ImpatientForLocks(intake.settings.topic("intake")),
                              SERVICE.runner_config(intake.settings, "requests"))
    stop = asyncio.Event()
    import asyncpg

    from opsat.common.db import asyncpg_dsn

    blocker = await asyncpg.connect(asyncpg_dsn(db))
    blocking = blocker.transaction()
    await blocking.start()
    await blocker.execute("lock table read_model.requests in access exclusive mode")
    worker = asyncio.create_task(run_loops([("projection:requests", runner.run)], stop))
    try:
        # The lock outlasts more batch retries than the retries (max_retries, 0.7 s) after which a failing event
        # used to be parked.
        await wait_until(lambda: _at_least(runner, runner.config.max_retries + 1), timeout=60,
                         what="retries against the lock")
        await blocking.rollback()
        await wait_until(lambda: _applied(db, 20), timeout=30, what="every event applied")
        await asyncio.sleep(0.5)
    finally:
        await blocker.close()
        stop.set()
        await asyncio.wait_for(worker, timeout=30)
        await engine.dispose()
    assert await _parked(intake) == []
    assert await scalar(db, "select count(*) from read_model.requests where version = 2") == 10
    assert runner.stats.retries > 0  # the lock did fail the projection: the test exercised the fault


async def test_an_older_event_never_moves_a_row_back(intake, kafka_bootstrap):
    agent = intake.token("agent-1", "ops", "agent")
    db = intake.settings.database_url
    topic = intake.settings.topic("intake")
    async with intake.worker(only=("relay", "projection")):
        rid = await intake.submit(title="monotone")
        for path, body in (("accept", {"team": "desk"}), ("start", None), ("resolve", {"solution": "done"})):
            r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=agent)
            assert r.status_code == 200, r.text
        await intake.wait_for(rid, 4)
    records = await consume_all(kafka_bootstrap, topic, min_count=4)
    accepted = next(r for r in records if int(json.loads(r.value)["sequence"]) == 2)

    # The projection itself: an older event applied over a newer row changes nothing.
    engine = create_engine(db, pool_size=2)
    try:
        async with engine.begin() as conn:
            await RequestsProjection(topic).apply(conn, decode_record(accepted, (SERVICE.registry(),)))
        assert await scalar(db, "select status || ':' || version from read_model.requests where id = $1",
                            rid) == "resolved:4"

        # Re-drive: the old event parked (as the runner parks) and re-driven after the row moved on is skipped.
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(SERVICE.dlq_topic(intake.settings, "requests"), accepted.value,
                                         key=accepted.key, headers=[("error", b"ConnectionError: lost"),
                                                                    ("original-topic", topic.encode())])
        finally:
            await producer.stop()
        result = await redrive(engine, RequestsProjection(topic), SERVICE.runner_config(intake.settings, "requests"))
    finally:
        await engine.dispose()
    assert await scalar(db, "select status || ':' || version from read_model.requests where id = $1",
                        rid) == "resolved:4"
    assert getattr(result, "skipped", None) == 1  # and it says what it skipped
