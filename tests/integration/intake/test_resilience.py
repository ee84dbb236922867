"""Failure cases with the real broker and database: Kafka outage, worker killed mid-stream, poison events."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import defaultdict

from aiokafka import AIOKafkaProducer

from opsat.common.testing.helpers import scalar
from opsat.common.testing.infra import consume_all


async def wait_until(predicate, timeout: float = 60.0, interval: float = 0.1) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


async def test_commands_succeed_while_kafka_is_down_and_everything_arrives_after(intake, local_infra,
                                                                                kafka_bootstrap):
    agent = intake.token("agent-1", "ops", "agent")
    db = intake.settings.database_url
    async with intake.worker():
        first = await intake.submit()
        await intake.wait_for(first, 1)
        await local_infra.stop_kafka_async()
        try:
            ids = [await intake.submit(title=f"during outage {i}") for i in range(10)]
            for rid in ids:
                r = await intake.client.post(f"/api/v1/requests/{rid}/accept", json={"team": "desk"}, headers=agent)
                assert r.status_code == 200, r.text
            assert await scalar(db, "select count(*) from outbox") >= 20  # waiting, not lost
        finally:
            await local_infra.start_kafka_async()
        await wait_until(lambda: _applied(db, 21), timeout=90)
        for rid in ids:
            view = await intake.wait_for(rid, 2)
            assert view["status"] == "accepted"
    # The relay deletes a batch once Kafka acknowledged it; after the restart that may come after the consumer
    # already applied the events, so the outbox drains soon after, not before.
    await wait_until(lambda: _outbox_empty(db), timeout=60)
    total = await scalar(db, "select count(*) from events")
    records = await consume_all(kafka_bootstrap, intake.settings.topic("intake"), min_count=total)
    per_request: dict[str, list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = json.loads(record.value)
        per_request[event["subject"]].append(int(event["sequence"]))
    for rid in ids:  # in order per request; a relay retry may repeat one, never reorder or drop
        assert sorted(set(per_request[rid])) == [1, 2]
        assert per_request[rid] == sorted(per_request[rid])
    # exactly once in the read model: one timeline row and one processed id per event
    assert await scalar(db, "select count(*) from read_model.timeline") == total
    assert await scalar(db, "select count(*) from read_model.processed_events where projection = 'requests'") == total


async def _applied_count(db: str) -> int:
    return await scalar(db, "select count(*) from read_model.processed_events where projection = 'requests'")


async def _applied(db: str, count: int) -> bool:
    return await _applied_count(db) >= count


def _worker_process(settings, **extra_env: str) -> subprocess.Popen:
    env = {**os.environ, "OPSAT_DATABASE_URL": settings.database_url, "OPSAT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "OPSAT_TOPIC_NAMESPACE": settings.topic_namespace, "OPSAT_WORKER_PORT": "0", "OPSAT_LOG_JSON": "false",
           "OPSAT_RELAY_POLL_INTERVAL_S": "0.2", "OPSAT_KAFKA_SESSION_TIMEOUT_MS": "6000", **extra_env}
    return subprocess.Popen([sys.executable, "-m", "opsat.intake", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


REQUESTS = 100  # enough that a kill lands mid-stream even when the relay and projection run fast
# Small relay batches and small polls make the events reach Kafka and the read model over many short
# transactions, so that a kill lands while some are still on their way.
SLOW_RELAY = {"OPSAT_RELAY_BATCH_SIZE": "1", "OPSAT_CONSUMER_MAX_RECORDS": "5"}


async def test_worker_killed_mid_stream_applies_every_event_once(intake):
    """SIGKILL the real worker process while it projects; after a restart the totals are exact."""
    agent = intake.token("agent-1", "ops", "agent")
    db = intake.settings.database_url
    ids = [await intake.submit(title=f"r{i}") for i in range(REQUESTS)]
    for rid in ids:
        await intake.client.post(f"/api/v1/requests/{rid}/accept", json={"team": "desk"}, headers=agent)
        await intake.client.post(f"/api/v1/requests/{rid}/start", headers=agent)
        for minutes in (5, 7, 11):  # time entries add up: a duplicate application would inflate the sum
            r = await intake.client.post(f"/api/v1/requests/{rid}/time-entries", json={"minutes": minutes},
                                         headers=agent)
            assert r.status_code == 200, r.text
    total = await scalar(db, "select count(*) from events")
    assert total == REQUESTS * 6
    at_kill = []
    for _ in range(3):
        # killed once it has applied a tenth more than the last one left (so it was projecting when it died)
        target = await _applied_count(db) + total // 10
        worker = _worker_process(intake.settings, **SLOW_RELAY)
        try:
            await wait_until(lambda target=target: _applied(db, target), timeout=60, interval=0.01)
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        # what the read model and the outbox held when the process died
        at_kill.append((await _applied_count(db), await scalar(db, "select count(*) from outbox")))
    # each kill interrupted work: the read model had fewer events than the store
    assert all(applied < total for applied, _ in at_kill), f"(applied, queued) at each kill: {at_kill} of {total}"
    worker = _worker_process(intake.settings)
    try:
        await wait_until(lambda: _applied(db, total), timeout=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert await scalar(db, "select count(*) from read_model.timeline") == total
    assert await scalar(db, "select sum(time_spent_minutes) from read_model.requests") == REQUESTS * 23
    assert await scalar(db, "select count(*) from read_model.requests where status = 'in_progress'") == REQUESTS


async def test_poison_event_is_parked_and_the_projection_goes_on(intake, kafka_bootstrap):
    topic = intake.settings.topic("intake")
    dlq = f"{intake.settings.topic_namespace}.intake.requests.dlq"
    async with intake.worker(only=("relay", "projection")):
        before = await intake.submit(title="before the poison")
        await intake.wait_for(before, 1)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"{not json", key=b"x")
            bad_data = {"specversion": "1.0", "id": "00000000-0000-4000-8000-000000000001", "source": "/opsat/intake",
                        "type": "opsat.intake.request.submitted.v1", "subject": "x", "time": "2026-01-01T00:00:00+00:00",
                        "sequence": "1", "data": {"request_id": "x", "title": 42}}
            await producer.send_and_wait(topic, json.dumps(bad_data).encode(), key=b"x")
            # decodes, but PostgreSQL refuses the NUL: the batch fails, one-by-one finds and parks it
            unstorable = {**bad_data, "id": "00000000-0000-4000-8000-000000000002", "data": {
                "request_id": "y", "at": "2026-01-01T00:00:00+00:00", "by": "u", "kind": "incident",
                "channel": "portal", "title": "nul \u0000 here", "description": "", "impact": 1, "urgency": 1,
                "priority": "P1", "requester_id": "u", "organisation_id": "acme"}}
            await producer.send_and_wait(topic, json.dumps(unstorable).encode(), key=b"y")
        finally:
            await producer.stop()
        after = await intake.submit(title="after the poison")
        view = await intake.wait_for(after, 1)
        assert view["title"] == "after the poison"
    parked = await consume_all(kafka_bootstrap, dlq, min_count=3)
    assert len(parked) == 3
    # A re-drive applies parked events again; these two are still broken, so they are parked once more.
    from opsat.common.consumer import redrive
    from opsat.common.db import create_engine
    from opsat.intake.projections.requests import RequestsProjection
    from opsat.intake.service import SERVICE

    engine = create_engine(intake.settings.database_url)
    redriven = await redrive(engine, RequestsProjection(topic), SERVICE.runner_config(intake.settings, "requests"))
    await engine.dispose()
    assert (redriven.applied, redriven.skipped, redriven.parked_again) == (0, 0, 3)
    assert len(await consume_all(kafka_bootstrap, dlq, min_count=6)) == 6
    headers = [dict(r.headers) for r in parked]
    assert all(h["original-topic"].decode() == topic for h in headers)
    assert any(b"JSONDecodeError" in h["error"] for h in headers)
    assert any(b"ValidationError" in h["error"] for h in headers)
    # PostgreSQL refuses the NUL in the text column ("invalid byte sequence") or in the JSON one ("unsupported Unicode
    # escape sequence"), whichever of the batch's rows it binds first.
    assert any(b"0x00" in h["error"] or b"unsupported Unicode escape sequence" in h["error"] for h in headers)


async def _outbox_empty(db: str) -> bool:
    return await scalar(db, "select count(*) from outbox") == 0
